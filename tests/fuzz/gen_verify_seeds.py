#!/usr/bin/env python3
"""Writes tests/fuzz/corpus/verify/: one correctly signed request per verify block of
fuzz_verify.c (same selector numbers, test secrets and clock), with the fixture bodies
of tests/fixtures, so the fuzzer starts from requests that verify. Run it again when
fuzz_verify.c's blocks or secrets change: python3 tests/fuzz/gen_verify_seeds.py
"""
import base64
import hashlib
import hmac
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(HERE, "corpus", "verify")
NOW = 1764000000
WHSEC_1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HMAC_1 = b"fuzz-hmac-secret-one"
TOKEN_1 = "fuzz-token-Lq3vP9"
URL = "http://127.0.0.1:8080/hooks/fuzz"


def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


def seed(sel, body, headers=(), query=(), url=None, template=None):
    parts = [body, "\n".join("%s: %s" % h for h in headers).encode(),
             "\n".join("%s=%s" % q for q in query).encode()]
    if url is not None or template is not None:
        parts.append((url or URL).encode())
    if template is not None:
        parts.append(template.encode())
    return bytes([sel]) + b"\n--\n".join(parts)


def mac(alg, content, enc):
    d = hmac.new(HMAC_1, content, alg).digest()
    return base64.b64encode(d).decode() if enc == "b64" else d.hex()


def main():
    os.makedirs(OUT, exist_ok=True)
    crm = fixture("crm_account_team_assigned.json")
    zd = fixture("zendesk_ticket_urgent.json")
    hs = fixture("hubspot_deal_stage.json")
    fd = fixture("freshdesk_agent_offline.json")
    zap = fixture("zapier_oncall.form")
    seeds = {}

    key = base64.b64decode(WHSEC_1[len("whsec_"):])
    msg_id, ts = "msg_2Kq9f7", str(NOW - 5)
    sig = base64.b64encode(hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + crm,
                                    hashlib.sha256).digest()).decode()
    seeds["standard_webhooks"] = seed(0, crm, [("webhook-id", msg_id), ("webhook-timestamp", ts),
                                               ("webhook-signature", "v1a,xx v1," + sig)])
    seeds["svix_names"] = seed(130, crm, [("svix-id", msg_id), ("svix-timestamp", ts),
                                          ("svix-signature", "v1," + sig)])
    zts = "2025-11-24T15:59:58Z"
    seeds["zendesk"] = seed(1, zd, [("X-Zendesk-Webhook-Signature",
                                     mac(hashlib.sha256, zts.encode() + zd, "b64")),
                                    ("X-Zendesk-Webhook-Signature-Timestamp", zts)])
    hts = str(NOW * 1000 - 1200)
    seeds["hubspot"] = seed(2, hs, [("X-HubSpot-Signature-v3",
                                     mac(hashlib.sha256, b"POST" + URL.encode() + hs + hts.encode(),
                                         "b64")),
                                    ("X-HubSpot-Request-Timestamp", hts)], url=URL)
    seeds["github_hex"] = seed(3, crm, [("X-Hub-Signature-256",
                                         "sha256=" + mac(hashlib.sha256, crm, "hex"))])
    seeds["sha1_b64"] = seed(4, fd, [("X-Signature", mac(hashlib.sha1, fd, "b64"))])
    seeds["sha512_hex"] = seed(5, zd, [("X-Signature", mac(hashlib.sha512,
                                                            b"POST " + URL.encode() + b"\n" + zd,
                                                            "hex"))], url=URL)
    seeds["hmac_template"] = seed(1, zd, [("X-Zendesk-Webhook-Signature",
                                           mac(hashlib.sha256, b"POST" + zd, "b64")),
                                          ("X-Zendesk-Webhook-Signature-Timestamp", str(NOW))],
                                  template="{method}{body}")
    seeds["bearer"] = seed(6, zd, [("Authorization", "Bearer " + TOKEN_1)])
    seeds["zapier_query"] = seed(7, zap, [("Content-Type", "application/x-www-form-urlencoded")],
                                 [("token", TOKEN_1)])
    seeds["basic"] = seed(8, fd, [("Authorization", "Basic " + base64.b64encode(
        ("freshdesk:" + TOKEN_1).encode()).decode())])
    seeds["none"] = seed(9, b"{}", [("Content-Type", "application/json")])

    # HubSpot's schemes (selector bit 0x40: block 10 + selector % 5), signed as HubSpot
    # documents: v1 sha256(secret + body), v2 sha256(secret + method + URI + body), v3
    # HMAC over method + URI (its twelve escapes decoded) + body + timestamp.
    seeds["hubspot_v1"] = seed(65, hs, [("X-HubSpot-Signature",
                                         hashlib.sha256(HMAC_1 + hs).hexdigest()),
                                        ("X-HubSpot-Signature-Version", "v1")])
    local = URL + "?portalId=62515"
    public = "https://hooks.example.com/hooks/fuzz?portalId=62515"
    seeds["hubspot_v2_forwarded"] = seed(66, hs, [
        ("X-HubSpot-Signature", hashlib.sha256(HMAC_1 + b"POST" + public.encode() + hs).hexdigest()),
        ("X-HubSpot-Signature-Version", "v2"), ("X-Forwarded-Host", "hooks.example.com"),
        ("X-Forwarded-Proto", "https")], url=local)
    ts = str(NOW * 1000)
    escaped = URL + "?next=https%3A%2F%2Fa.example%2F%3Fx%3D1"
    decoded = URL + "?next=https://a.example/?x%3D1"
    seeds["hubspot_v3_decoded"] = seed(67, hs, [
        ("X-HubSpot-Signature-v3", mac(hashlib.sha256, b"POST" + decoded.encode() + hs +
                                       ts.encode(), "b64")),
        ("X-HubSpot-Request-Timestamp", ts)], url=escaped)
    decoded = decoded.replace("http://127.0.0.1:8080", "https://hooks.example.com")
    seeds["hubspot_v3_forwarded"] = seed(68, hs, [
        ("X-HubSpot-Signature-v3", mac(hashlib.sha256, b"POST" + decoded.encode() + hs +
                                       ts.encode(), "b64")),
        ("X-HubSpot-Request-Timestamp", ts), ("X-Forwarded-Host", "hooks.example.com, edge"),
        ("X-Forwarded-Proto", "https")], url=escaped)
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

"""Integration tests of the senders of issue 15 through the real `hookline serve` over
loopback HTTP, each request signed here with the vendor's published algorithm (Python's
hashlib/hmac, independent of the C code):

- HubSpot v3 (HMAC-SHA256, base64, over method + URI + body + timestamp, the URI with
  HubSpot's twelve percent-escapes decoded, 5 minutes): through a real reverse proxy
  that sets X-Forwarded-Host/Proto, accepted only on a source with
  "trust_forwarded": true; replayed timestamps refused.
- HubSpot v1 (SHA-256 hex of secret + body) and v2 (secret + method + URI + body; not
  HMAC): accepted, tampered bodies and URIs refused.
- Salesforce Outbound Messages (tests/fixtures/salesforce/): 200 with the exact SOAP
  acknowledgement; stored durably with the SessionId redacted; the rule
  (conf/rules/salesforce.lua) sees the notifications as tables and plans its job;
  a redelivery is acknowledged as a duplicate; a wrong OrganizationId is 403 with nothing
  stored; a DOCTYPE / entity bomb is 400; the wrong media type is 415; a message whose
  rule failed is reprocessed from the stored (redacted) copy once the rule is fixed.

Run: HOOKLINE_BIN=build/hookline python3 tests/integration/test_senders.py -v
"""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hookline_harness import make_tmpdir, start_server  # noqa: E402

SOURCE_DIR = os.environ.get("HOOKLINE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SFDC_FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures", "salesforce")
RULES = os.path.join(SOURCE_DIR, "conf", "rules")

HS_SECRET = "hs-app-client-S3cret-4e1f"
SF_TOKEN = "sf-om-T0ken-9bq2-secret"
ORG_ID = "00D5g000004ElSmEAK"
SESSION_MARK = "AQ4AQH0dMHZfz972Szmpkb58urFRkgeBGsxL"  # part of the fixture's SessionId

SOAP_ACK = ('<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            '<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
            '<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>')

HS_BODY = json.dumps([{"eventId": 1843152385, "subscriptionId": 2881778, "portalId": 62515,
                       "occurredAt": 1732521120312, "subscriptionType": "deal.propertyChange",
                       "attemptNumber": 0, "objectId": 18244310577, "propertyName": "dealstage",
                       "propertyValue": "contractsent", "changeSource": "CRM"}],
                     separators=(",", ":")).encode()

# HubSpot's table of escapes it decodes in the request URI before signing (v3).
HS_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
              "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def hubspot_v3_uri(uri):
    return re.sub(r"%[0-9A-Fa-f]{2}", lambda m: HS_DECODED.get(m.group(0).upper(), m.group(0)),
                  uri)


def hubspot_v3_headers(method, uri, body, ts_ms=None, secret=HS_SECRET):
    ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    source = method.encode() + hubspot_v3_uri(uri).encode() + body + ts.encode()
    sig = base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-HubSpot-Signature-v3": sig,
            "X-HubSpot-Request-Timestamp": ts}


def hubspot_v1_headers(body, secret=HS_SECRET):
    return {"Content-Type": "application/json", "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature": hashlib.sha256(secret.encode() + body).hexdigest()}


def hubspot_v2_headers(method, uri, body, secret=HS_SECRET):
    sig = hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()
    return {"Content-Type": "application/json", "X-HubSpot-Signature-Version": "v2",
            "X-HubSpot-Signature": sig}


def read_fixture(name):
    with open(os.path.join(SFDC_FIXTURES, name), "rb") as f:
        return f.read()


def as_bytes(v):
    return v if isinstance(v, (bytes, bytearray, memoryview)) and not isinstance(v, str) \
        else str(v).encode()


class ForwardingProxy:
    """A reverse proxy on 127.0.0.1 that terminates "TLS" for a public host: it forwards
    each request to hookline unchanged except Host, adding X-Forwarded-Host (the Host the
    client called) and X-Forwarded-Proto: https, as nginx or a load balancer does."""

    def __init__(self, upstream_port):
        upstream = upstream_port

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection")}
                headers["X-Forwarded-Host"] = self.headers.get("Host", "")
                headers["X-Forwarded-Proto"] = "https"
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=15)
                try:
                    conn.request("POST", self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "date",
                                             "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def post(self, public_host, path, body, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.putrequest("POST", path, skip_host=True)
            conn.putheader("Host", public_host)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class HubSpotTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        secret = {"secret": HS_SECRET}
        cls.srv = start_server(cls, {"sources": {
            "hubspot": {"verify": dict(scheme="hubspot-v3", trust_forwarded=True, **secret)},
            "hubspot-direct": {"verify": dict(scheme="hubspot-v3", **secret)},
            "hubspot-v1": {"verify": dict(scheme="hubspot-v1", **secret)},
            "hubspot-v2": {"verify": dict(scheme="hubspot-v2", **secret)},
        }})
        cls.proxy = ForwardingProxy(cls.srv.port)
        cls.addClassCleanup(cls.proxy.close)

    def test_v3_through_proxy_only_when_trusted(self):
        public = "hooks.example.com"
        # A query with escapes HubSpot decodes (%3A %2F %3F %40) and one it keeps (%3D).
        target = "/hooks/hubspot?portal=62515&next=https%3A%2F%2Fapp.example%2Fd%3Fid%3D7%40x"
        uri = "https://" + public + target
        st, body = self.proxy.post(public, target, HS_BODY,
                                   hubspot_v3_headers("POST", uri, HS_BODY))
        self.assertEqual(st, 202, body)
        self.assertEqual(json.loads(body)["status"], "accepted")

        # The same, signed for the public URL, to the source that does not trust the proxy.
        target = "/hooks/hubspot-direct?portal=62515&next=https%3A%2F%2Fapp.example%2F"
        uri = "https://" + public + target
        st, body = self.proxy.post(public, target, HS_BODY,
                                   hubspot_v3_headers("POST", uri, HS_BODY))
        self.assertEqual(st, 401, body)
        self.assertEqual(json.loads(body)["type"], "urn:hookline:problem:signature-invalid")
        # That source verifies the URL it was called with, forwarded headers or not.
        uri = "http://%s%s" % (self.srv.host_header(), target)
        h = hubspot_v3_headers("POST", uri, HS_BODY)
        h.update({"X-Forwarded-Host": public, "X-Forwarded-Proto": "https"})
        r = self.srv.post("hubspot-direct", HS_BODY, h,
                          query="?portal=62515&next=https%3A%2F%2Fapp.example%2F")
        self.assertEqual(r.status, 202, r)

    def test_v3_undecoded_signature_and_tampering_refused(self):
        public = "hooks.example.com"
        target = "/hooks/hubspot?next=https%3A%2F%2Fapp.example%2F"
        uri = "https://" + public + target
        # Signed over the escaped URI (not HubSpot's rule): refused.
        ts = str(int(time.time() * 1000))
        raw = b"POST" + uri.encode() + HS_BODY + ts.encode()
        h = {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": ts,
             "X-HubSpot-Signature-v3": base64.b64encode(
                 hmac.new(HS_SECRET.encode(), raw, hashlib.sha256).digest()).decode()}
        st, body = self.proxy.post(public, target, HS_BODY, h)
        self.assertEqual(st, 401, body)
        # Tampered body.
        h = hubspot_v3_headers("POST", uri, HS_BODY)
        st, body = self.proxy.post(public, target, HS_BODY.replace(b"62515", b"62516"), h)
        self.assertEqual(st, 401, body)
        # Another public host than the one signed.
        st, body = self.proxy.post("evil.example.com", target, HS_BODY, h)
        self.assertEqual(st, 401, body)
        # Six minutes old: outside HubSpot's five.
        old = int((time.time() - 360) * 1000)
        st, body = self.proxy.post(public, target, HS_BODY,
                                   hubspot_v3_headers("POST", uri, HS_BODY, ts_ms=old))
        self.assertEqual(st, 401, body)
        self.assertEqual(json.loads(body)["type"],
                         "urn:hookline:problem:timestamp-out-of-tolerance")
        # Nothing of these was stored; the secret is in no answer.
        for resp in self.srv.responses:
            self.assertNotIn(HS_SECRET.encode(), resp)

    def test_v1_and_v2(self):
        body = HS_BODY
        r = self.srv.post("hubspot-v1", body, hubspot_v1_headers(body))
        self.assertEqual(r.status, 202, r)
        r = self.srv.post("hubspot-v1", body + b" ", hubspot_v1_headers(body))
        self.assertEqual(r.status, 401, r)
        # An HMAC of the body is not HubSpot v1.
        h = hubspot_v1_headers(body)
        h["X-HubSpot-Signature"] = hmac.new(HS_SECRET.encode(), body, hashlib.sha256).hexdigest()
        r = self.srv.post("hubspot-v1", body, h)
        self.assertEqual(r.status, 401, r)

        uri = "http://%s/hooks/hubspot-v2?userId=123&portalId=62515" % self.srv.host_header()
        r = self.srv.post("hubspot-v2", body, hubspot_v2_headers("POST", uri, body),
                          query="?userId=123&portalId=62515")
        self.assertEqual(r.status, 202, r)
        # Tampered query (part of the signed URI) and tampered body.
        r = self.srv.post("hubspot-v2", body, hubspot_v2_headers("POST", uri, body),
                          query="?userId=124&portalId=62515")
        self.assertEqual(r.status, 401, r)
        r = self.srv.post("hubspot-v2", body[:-1] + b" ]", hubspot_v2_headers("POST", uri, body),
                          query="?userId=123&portalId=62515")
        self.assertEqual(r.status, 401, r)
        # A v1 signature sent to the v2 source names the mismatch.
        r = self.srv.post("hubspot-v2", body, hubspot_v1_headers(body))
        self.assertEqual(r.status, 401, r)
        self.assertIn("expects v2", r.json()["detail"])


class SalesforceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = start_server(cls, {
            "didww": {"base_url": "http://127.0.0.1:9/v3"},
            "rules": {"script": os.path.join(RULES, "salesforce.lua"),
                      "data": {"salesforce": os.path.join(RULES, "salesforce.json")}},
            "sources": {
                "salesforce": {"format": "salesforce-outbound", "organization_id": ORG_ID,
                               "verify": {"scheme": "token", "query": "token",
                                          "secret": SF_TOKEN}},
                # The 15-character form of the id is accepted too.
                "salesforce15": {"format": "salesforce-outbound",
                                 "organization_id": ORG_ID[:15],
                                 "verify": {"scheme": "token", "query": "token",
                                            "secret": SF_TOKEN}},
                "other-org": {"format": "salesforce-outbound",
                              "organization_id": "00D000000000001AAA",
                              "verify": {"scheme": "token", "query": "token",
                                         "secret": SF_TOKEN}},
                "json": {"verify": {"scheme": "token", "query": "token", "secret": SF_TOKEN}},
            }})

    def post_xml(self, source, body, ctype="text/xml; charset=utf-8"):
        return self.srv.post(source, body, {"Content-Type": ctype, "SOAPAction": '""'},
                             query="?token=" + SF_TOKEN)

    def test_account_acked_stored_redacted_and_ruled(self):
        xml = read_fixture("account_outbound.xml")
        r = self.post_xml("salesforce", xml)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Type"), "text/xml; charset=utf-8")
        self.assertEqual(r.body.decode(), SOAP_ACK)

        rows = self.srv.query("SELECT event_id, status, content_type, body FROM events "
                              "WHERE source = ?", ("salesforce",))
        self.assertEqual(len(rows), 1)
        event_id, status, ctype, stored = rows[0]
        self.assertEqual(event_id, "04l5g00000Hd7XzAAJ")  # the notification Id
        self.assertEqual(status, "accepted")
        self.assertEqual(ctype, "text/xml; charset=utf-8")
        stored = bytes(as_bytes(stored))
        self.assertNotIn(SESSION_MARK.encode(), stored)
        self.assertIn(b"<SessionId>[redacted]</SessionId>", stored)
        self.assertEqual(stored.replace(b"[redacted]", b""),
                         re.sub(rb"<SessionId>[^<]*</SessionId>", b"<SessionId></SessionId>", xml))

        # The rule read notifications[1].sobject.Support_Number__c and .Type as table fields.
        jobs = self.srv.query("SELECT action, path, body FROM jobs WHERE event_id = ?",
                              ("04l5g00000Hd7XzAAJ",))
        self.assertEqual(len(jobs), 1, jobs)
        self.assertEqual(jobs[0][0], "route_did")
        self.assertEqual(jobs[0][1], "/v3/dids/number:493090182000")
        self.assertIn("f934c1f1-47d6-4831-9a38-21d8c7def3ca", jobs[0][2])

        # Redelivery (Salesforce retries until acked): acknowledged, not stored again.
        r = self.post_xml("salesforce", xml)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body.decode(), SOAP_ACK)
        self.assertEqual(self.srv.count_events("salesforce"), 1)
        self.assertEqual(len(self.srv.query("SELECT id FROM jobs WHERE event_id = ?",
                                            ("04l5g00000Hd7XzAAJ",))), 1)

        # The SessionId is in no log line and no audit record.
        self.assertNotIn(SESSION_MARK, self.srv.log_text())
        records, res = self.srv.audit()
        self.assertNotIn(SESSION_MARK, res.stdout)
        self.assertTrue(any(rec.get("kind") == "event.received" and
                            rec.get("event_id") == "04l5g00000Hd7XzAAJ" for rec in records))

    def test_two_notifications_skipped_with_reason(self):
        xml = read_fixture("two_cases_outbound.xml")
        r = self.post_xml("salesforce15", xml)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body.decode(), SOAP_ACK)
        ids = "04l5g00000Hd8AbAAJ,04l5g00000Hd8AcAAJ"
        want_id = "sha256:" + hashlib.sha256(ids.encode()).hexdigest()
        self.assertEqual(self.srv.count_events("salesforce15", want_id), 1)
        records = self.srv.wait_audit(
            lambda recs: any(x.get("kind") == "rule.skipped" for x in recs),
            "--event", want_id)
        skipped = [x for x in records if x.get("kind") == "rule.skipped"]
        self.assertEqual(len(skipped), 1, records)
        reason = skipped[0]["detail"]["reason"]
        self.assertIn("04l5g00000Hd8AbAAJ is a Case", reason)
        self.assertIn("04l5g00000Hd8AcAAJ is a Case", reason)

    def test_wrong_organization_refused(self):
        xml = read_fixture("account_outbound.xml")
        r = self.post_xml("other-org", xml)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/problem+json")
        p = r.json()
        self.assertEqual(p["type"], "urn:hookline:problem:organization-mismatch")
        self.assertIn(ORG_ID, p["detail"])
        self.assertEqual(self.srv.count_events("other-org"), 0)
        self.assertNotIn(SESSION_MARK.encode(), r.body)
        records = self.srv.wait_audit(
            lambda recs: any(x.get("kind") == "event.rejected" for x in recs),
            "--source", "other-org")
        rejected = [x for x in records if x.get("kind") == "event.rejected"]
        self.assertEqual(len(rejected), 1, records)
        self.assertEqual(rejected[0]["detail"]["status"], 403)
        self.assertNotIn(SESSION_MARK, json.dumps(records))

    def test_dtd_and_entities_refused(self):
        bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                b'<lolz>&lol3;</lolz>')
        xxe = read_fixture("account_outbound.xml").replace(
            b'<?xml version="1.0" encoding="UTF-8"?>',
            b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>').replace(
            b"<sf:Name>Edge", b"<sf:Name>&x;Edge")
        for body in (bomb, xxe):
            r = self.post_xml("salesforce", body)
            self.assertEqual(r.status, 400, r)
            p = r.json()
            self.assertEqual(p["type"], "urn:hookline:problem:malformed-body")
            self.assertIn("DOCTYPE is not allowed", p["detail"])
        r = self.post_xml("salesforce", b"<soapenv:Envelope")
        self.assertEqual(r.status, 400, r)
        self.assertIn("XML error", r.json()["detail"])
        self.assertEqual(self.srv.query(
            "SELECT count(*) FROM events WHERE source = ? AND event_id NOT LIKE ?",
            ("salesforce", "04l5g%"))[0][0], 0)

    def test_media_types(self):
        xml = read_fixture("account_outbound.xml")
        r = self.post_xml("salesforce", b"{}", ctype="application/json")
        self.assertEqual(r.status, 415, r)
        self.assertIn("text/xml", r.json()["detail"])
        r = self.post_xml("json", xml)
        self.assertEqual(r.status, 415, r)
        # Without the token: 401, nothing parsed or stored.
        r = self.srv.post("salesforce", xml, {"Content-Type": "text/xml"})
        self.assertEqual(r.status, 401, r)


class SalesforceReprocessTest(unittest.TestCase):
    """A stored message is re-read from the store: a rule that failed on it runs again
    after the fix, on the redacted copy, and still sees the notifications as tables."""

    FIXED = """
function on_event(ev)
    assert(ev.body.session_id == nil, "session id given to the rule")
    assert(ev.raw:find("<SessionId>[redacted]</SessionId>", 1, true), "raw not redacted")
    local so = ev.body.notifications[1].sobject
    assert(so.type == "Account" and so.Fax == json.null, "not the Account table")
    didww.route_did{number = so.Phone, trunk_group = "9e4d31fe-21ac-409c-8ca3-3d0fe1eee2b2"}
end
"""

    def test_rule_failed_then_reprocessed(self):
        tmp = make_tmpdir()
        self.addCleanup(shutil.rmtree, tmp, True)
        rule = os.path.join(tmp, "sf.lua")
        with open(rule, "w") as f:
            f.write('function on_event(ev) error("mapping not deployed yet") end\n')
        srv = start_server(self, {
            "didww": {"base_url": "http://127.0.0.1:9/v3"},
            "rules": {"script": rule},
            "sources": {"sf": {"format": "salesforce-outbound", "organization_id": ORG_ID,
                               "verify": {"scheme": "token", "query": "token",
                                          "secret": SF_TOKEN}}}}, tmpdir=tmp)
        r = srv.post("sf", read_fixture("account_outbound.xml"), {"Content-Type": "text/xml"},
                     query="?token=" + SF_TOKEN)
        self.assertEqual(r.status, 200, r)  # stored (rule_failed): acknowledged
        self.assertEqual(r.body.decode(), SOAP_ACK)
        self.assertEqual(srv.query("SELECT status FROM events WHERE source = ?", ("sf",)),
                         [("rule_failed",)])

        with open(rule, "w") as f:
            f.write(self.FIXED)
        res = srv.cli("events", "-c", srv.config_path, "reprocess")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("04l5g00000Hd7XzAAJ: accepted", res.stdout)
        jobs = srv.query("SELECT path, body FROM jobs")
        self.assertEqual(len(jobs), 1, jobs)
        self.assertEqual(jobs[0][0], "/v3/dids/number:4930901820")
        self.assertIn("9e4d31fe-21ac-409c-8ca3-3d0fe1eee2b2", jobs[0][1])
        self.assertNotIn(SESSION_MARK, res.stdout + res.stderr + srv.log_text())


if __name__ == "__main__":
    unittest.main()

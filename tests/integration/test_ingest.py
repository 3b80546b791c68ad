"""Integration tests of `hookline serve`: POST /hooks/{source} over real HTTP on
127.0.0.1, the store behind it (SQLite or PostgreSQL, read back through the harness), the
audit trail (via `hookline audit`), metrics, shutdown, durability and migrations.

Run: HOOKLINE_BIN=build/hookline python3 tests/integration/test_ingest.py -v
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hookline_harness import (  # noqa: E402
    STORE_BACKEND,
    HooklineServer,
    hmac_b64,
    hmac_hex,
    make_tmpdir,
    parse_json_lines,
    run_cli,
    sha256_hex,
    sqlite_only,
    start_server,
    sw_headers,
    sw_signature,
    whsec_key,
)

# ---------- secrets used by the tests (each must never leak) ----------

CRM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROT_OLD = "whsec_" + base64.b64encode(b"rotation-old-key-0123456789").decode()
ROT_NEW = "whsec_" + base64.b64encode(b"rotation-new-key-ABCDEFGHIJ").decode()
ROT_OTHER = "whsec_" + base64.b64encode(b"not-a-configured-key-XYZ!!").decode()
TOK_SECRET = "tok-S3cret-7Qe9-bearer-value"
GH_SECRET = "gh-hmac-S3cret-Zx81"
ZD_SECRET = "zd-hmac-S3cret-Kp27"
HS_SECRET = "hs-client-S3cret-Wq55"
ZAP_TOKEN = "zap-query-T0ken-Mm42"
BASIC_USER = "u"
BASIC_PW = "basic-Pass:Rr09-secret"  # a colon is legal in a Basic password
METR_TOKEN = "metr-T0ken-Hh31-secret"
CONC_TOKEN = "conc-T0ken-Jj72-secret"

ALL_SECRETS = [CRM_SECRET, ROT_OLD, ROT_NEW, TOK_SECRET, GH_SECRET, ZD_SECRET, HS_SECRET,
               ZAP_TOKEN, BASIC_PW, METR_TOKEN, CONC_TOKEN]


def secret_needles():
    """Every string whose appearance in output would be a leak."""
    needles = set(ALL_SECRETS)
    for s in (CRM_SECRET, ROT_OLD, ROT_NEW):
        needles.add(s[len("whsec_"):])          # the base64 key
        needles.add(whsec_key(s).hex())          # the raw key, hex
    needles.add(base64.b64encode(("%s:%s" % (BASIC_USER, BASIC_PW)).encode()).decode())
    return sorted(needles)


SECRET_ENV = {
    "CRM_SECRET": CRM_SECRET,
    "ROT_OLD": ROT_OLD,
    "ROT_NEW": ROT_NEW,
    "TOK_SECRET": TOK_SECRET,
    "GH_SECRET": GH_SECRET,
    "ZD_SECRET": ZD_SECRET,
    "HS_SECRET": HS_SECRET,
    "ZAP_TOKEN": ZAP_TOKEN,
    "BASIC_PW": BASIC_PW,
    "METR_TOKEN": METR_TOKEN,
    "CONC_TOKEN": CONC_TOKEN,
}


def token_source(env_name, **extra):
    src = {"verify": {"scheme": "token", "header": "Authorization", "prefix": "Bearer ",
                      "secret": "env:" + env_name}}
    src.update(extra)
    return src


MAX_BODY = 1024

MAIN_CONFIG = {
    "listen": {"max_body_bytes": MAX_BODY},
    "log": {"level": "debug"},
    "sources": {
        "tok": token_source("TOK_SECRET"),
        "metr": token_source("METR_TOKEN"),
        "conc": token_source("CONC_TOKEN"),
        "crm": {"verify": {"scheme": "standard-webhooks", "secret": "env:CRM_SECRET"}},
        "rot": {"verify": {"scheme": "standard-webhooks",
                           "secrets": ["env:ROT_OLD", "env:ROT_NEW"]}},
        "gh": {"verify": {"scheme": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256=",
                          "encoding": "hex", "secret": "env:GH_SECRET"}},
        "zd": {"verify": {"scheme": "hmac", "algorithm": "sha256", "encoding": "base64",
                          "header": "X-Zendesk-Webhook-Signature",
                          "signed": "{header:x-zendesk-webhook-signature-timestamp}{body}",
                          "timestamp_header": "X-Zendesk-Webhook-Signature-Timestamp",
                          "secret": "env:ZD_SECRET"}},
        "hs": {"verify": {"scheme": "hmac", "algorithm": "sha256", "encoding": "base64",
                          "header": "X-HubSpot-Signature-v3",
                          "signed": "{method}{url}{body}{header:x-hubspot-request-timestamp}",
                          "timestamp_header": "X-HubSpot-Request-Timestamp",
                          "secret": "env:HS_SECRET"}},
        "zap": {"verify": {"scheme": "token", "query": "token", "secret": "env:ZAP_TOKEN"}},
        "basic": {"verify": {"scheme": "basic", "username": BASIC_USER,
                             "password": "env:BASIC_PW"}},
        "open": {"verify": {"scheme": "none", "insecure": True}},
        "tix": {"verify": {"scheme": "none", "insecure": True}, "event_id": "json:/ticket/id"},
        "hdr": {"verify": {"scheme": "none", "insecure": True},
                "event_id": "header:X-Request-Id"},
    },
}

JSON_CT = {"Content-Type": "application/json"}
FORM_CT = {"Content-Type": "application/x-www-form-urlencoded"}


def bearer(token):
    return {"Authorization": "Bearer " + token}


def rfc3339_now(offset_s=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


_counter = [0]
_counter_lock = threading.Lock()


def unique_body(tag="ev"):
    """A JSON body that no other request of this run sends."""
    with _counter_lock:
        _counter[0] += 1
        n = _counter[0]
    return json.dumps({"kind": tag, "n": n, "nonce": "%d-%d-%f" % (os.getpid(), n, time.time()),
                       "ticket": {"id": n}}).encode()


class Assertions:
    def assertProblem(self, r, status):
        """An RFC 9457 problem answer with the given status."""
        self.assertEqual(r.status, status, r)
        ctype = r.headers.get("Content-Type", "")
        self.assertTrue(ctype.startswith("application/problem+json"),
                        "Content-Type %r for %r" % (ctype, r))
        p = r.json()
        for field in ("type", "title", "status", "detail"):
            self.assertIn(field, p, r)
        self.assertIsInstance(p["type"], str)
        self.assertIsInstance(p["title"], str)
        self.assertIsInstance(p["detail"], str)
        self.assertEqual(p["status"], status, r)
        return p

    def assertAccepted(self, r, event_id):
        self.assertEqual(r.status, 202, r)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"), r)
        self.assertEqual(r.json(), {"event_id": event_id, "status": "accepted", "jobs": 0})

    def assertDuplicate(self, r, event_id):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"event_id": event_id, "status": "duplicate"})

    def assertNotLeaked(self, text, needles, where):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for n in needles:
            self.assertNotIn(n, text, "secret material %r found in %s" % (n[:6] + "...", where))


# =====================================================================================
# The main server: one process, many sources, every row of the POST answer list.
# =====================================================================================

class IngestTest(Assertions, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = start_server(cls, MAIN_CONFIG, env=SECRET_ENV)
        cls.sent_signatures = []  # valid signatures we sent: must never be logged or audited

    def post_tok(self, body, extra=None, source="tok", token=TOK_SECRET):
        h = dict(JSON_CT)
        h.update(bearer(token))
        if extra:
            h.update(extra)
        return self.srv.post(source, body, h)

    def post_sw(self, source, secret, body, msg_id, timestamp=None, prefix="webhook"):
        h = sw_headers(secret, msg_id, body, timestamp, prefix)
        self.sent_signatures.append(h[prefix + "-signature"][3:])
        return self.srv.post(source, body, h)

    # ---------- 202 / 200 ----------

    def test_token_accepted_body_and_default_event_id(self):
        body = unique_body("tok")
        r = self.post_tok(body)
        self.assertAccepted(r, hashlib.sha256(body).hexdigest())
        self.assertRegex(r.json()["event_id"], r"^[0-9a-f]{64}$")
        self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 1)
        row = self.srv.query("SELECT body, content_type, status FROM events "
                             "WHERE source='tok' AND event_id=?", (sha256_hex(body),))[0]
        self.assertEqual(bytes(row[0]), body)
        self.assertEqual(row[1], "application/json")
        self.assertEqual(row[2], "accepted")

    @sqlite_only("names the SQLite backend's own threads (the WAL syncer and the checkpointer)")
    def test_threads_are_named_for_top_and_perf(self):
        # An operator's `top -H` / `ps -L` tells the store's threads apart.
        names = self.srv.thread_names()
        for want in ("store-writer", "store-syncer", "sqlite-ckpt", "MHD-worker"):
            self.assertIn(want, names, sorted(names))

    def test_json_content_type_with_parameters_accepted(self):
        body = unique_body("charset")
        r = self.post_tok(body, {"Content-Type": "application/json; charset=utf-8"})
        self.assertAccepted(r, sha256_hex(body))

    def test_duplicate_answered_200_stored_once_and_audited(self):
        body = unique_body("dup")
        eid = sha256_hex(body)
        self.assertAccepted(self.post_tok(body), eid)
        self.assertDuplicate(self.post_tok(body), eid)
        self.assertDuplicate(self.post_tok(body), eid)
        self.assertEqual(self.srv.count_events("tok", eid), 1)
        recs = self.srv.wait_audit(lambda rs: len(rs) >= 3, "--event", eid)
        kinds = [r["kind"] for r in recs]
        self.assertEqual(kinds, ["event.received", "event.duplicate", "event.duplicate"], recs)
        for rec in recs:
            self.assertEqual(rec["source"], "tok")
            self.assertEqual(rec["event_id"], eid)

    def test_exactly_max_body_bytes_is_accepted(self):
        prefix = b'{"pad":"'
        suffix = b'"}'
        body = prefix + b"y" * (MAX_BODY - len(prefix) - len(suffix) - 8) + \
            ("%08d" % (time.time_ns() % 10 ** 8)).encode() + suffix
        self.assertEqual(len(body), MAX_BODY)
        self.assertAccepted(self.post_tok(body), sha256_hex(body))

    # ---------- 401 ----------

    def test_token_wrong_401(self):
        body = unique_body("tokbad")
        r = self.post_tok(body, token=TOK_SECRET + "x")
        p = self.assertProblem(r, 401)
        self.assertNotLeaked(r.body, [TOK_SECRET], "the 401 body")
        self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 0)
        self.assertTrue(p["detail"])

    def test_token_missing_header_401(self):
        body = unique_body("tokmissing")
        r = self.srv.post("tok", body, JSON_CT)
        self.assertProblem(r, 401)
        self.assertNotLeaked(r.body, [TOK_SECRET], "the 401 body")
        self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 0)

    def test_standard_webhooks_accepted_event_id_is_webhook_id(self):
        body = unique_body("sw")
        msg_id = "msg_%d_accept" % time.time_ns()
        r = self.post_sw("crm", CRM_SECRET, body, msg_id)
        self.assertAccepted(r, msg_id)
        self.assertEqual(self.srv.count_events("crm", msg_id), 1)
        # A resend of the same message id is a duplicate.
        self.assertDuplicate(self.post_sw("crm", CRM_SECRET, body, msg_id), msg_id)

    def test_standard_webhooks_svix_header_names(self):
        body = unique_body("svix")
        msg_id = "msg_%d_svix" % time.time_ns()
        r = self.post_sw("crm", CRM_SECRET, body, msg_id, prefix="svix")
        self.assertAccepted(r, msg_id)
        self.assertEqual(self.srv.count_events("crm", msg_id), 1)

    def test_standard_webhooks_signature_list_any_v1_matches(self):
        body = unique_body("swlist")
        msg_id = "msg_%d_list" % time.time_ns()
        h = sw_headers(CRM_SECRET, msg_id, body)
        good = h["webhook-signature"]
        wrong = "v1," + sw_signature(ROT_OTHER, msg_id, int(h["webhook-timestamp"]), body)
        h["webhook-signature"] = "v1a,AAAA " + wrong + " " + good
        self.assertAccepted(self.srv.post("crm", body, h), msg_id)

    def sw_401(self, body_sent, headers, signed_body, msg_id, ts):
        """Posts to crm, asserts a problem 401 that reveals neither the secret nor the
        signature the server expected for what it received."""
        r = self.srv.post("crm", body_sent, headers)
        p = self.assertProblem(r, 401)
        expected = [sw_signature(CRM_SECRET, msg_id, ts, body_sent),
                    sw_signature(CRM_SECRET, msg_id, ts, signed_body)]
        expected_hex = [base64.b64decode(e).hex() for e in expected]
        self.assertNotLeaked(r.body, secret_needles() + expected + expected_hex, "the 401 body")
        self.assertEqual(self.srv.count_events("crm", msg_id), 0)
        return p

    def test_standard_webhooks_bad_signature_401(self):
        body = unique_body("swbad")
        msg_id = "msg_%d_bad" % time.time_ns()
        ts = int(time.time())
        h = sw_headers(ROT_OTHER, msg_id, body, ts)  # signed with a key crm does not have
        self.sw_401(body, h, body, msg_id, ts)

    def test_standard_webhooks_tampered_body_401(self):
        body = unique_body("swtamper")
        msg_id = "msg_%d_tamper" % time.time_ns()
        ts = int(time.time())
        h = sw_headers(CRM_SECRET, msg_id, body, ts)
        tampered = body.replace(b'"kind": "swtamper"', b'"kind": "swtampeR"')
        self.assertNotEqual(tampered, body)
        self.sw_401(tampered, h, body, msg_id, ts)

    def test_standard_webhooks_timestamp_too_old_401(self):
        body = unique_body("swold")
        msg_id = "msg_%d_old" % time.time_ns()
        ts = int(time.time()) - 400  # tolerance_s defaults to 300
        h = sw_headers(CRM_SECRET, msg_id, body, ts)  # correctly signed, but stale
        self.sw_401(body, h, body, msg_id, ts)

    def test_standard_webhooks_timestamp_in_future_401(self):
        body = unique_body("swfuture")
        msg_id = "msg_%d_future" % time.time_ns()
        ts = int(time.time()) + 400
        h = sw_headers(CRM_SECRET, msg_id, body, ts)
        self.sw_401(body, h, body, msg_id, ts)

    def test_standard_webhooks_timestamp_within_tolerance_accepted(self):
        body = unique_body("swskew")
        msg_id = "msg_%d_skew" % time.time_ns()
        r = self.post_sw("crm", CRM_SECRET, body, msg_id, timestamp=int(time.time()) - 200)
        self.assertAccepted(r, msg_id)

    def test_standard_webhooks_missing_headers_401(self):
        body = unique_body("swmissing")
        msg_id = "msg_%d_missing" % time.time_ns()
        ts = int(time.time())
        full = sw_headers(CRM_SECRET, msg_id, body, ts)
        for drop in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            h = {k: v for k, v in full.items() if k != drop}
            with self.subTest(missing=drop):
                self.sw_401(body, h, body, msg_id, ts)

    def test_standard_webhooks_key_rotation(self):
        for name, secret in (("new", ROT_NEW), ("old", ROT_OLD)):
            with self.subTest(key=name):
                body = unique_body("rot")
                msg_id = "msg_%d_rot_%s" % (time.time_ns(), name)
                self.assertAccepted(self.post_sw("rot", secret, body, msg_id), msg_id)
        body = unique_body("rot")
        msg_id = "msg_%d_rot_other" % time.time_ns()
        r = self.srv.post("rot", body, sw_headers(ROT_OTHER, msg_id, body))
        self.assertProblem(r, 401)
        self.assertEqual(self.srv.count_events("rot", msg_id), 0)

    def test_hmac_github_style(self):
        body = unique_body("gh")
        sig = hmac_hex(GH_SECRET, body)
        self.sent_signatures.append(sig)
        h = dict(JSON_CT)
        h["X-Hub-Signature-256"] = "sha256=" + sig
        self.assertAccepted(self.srv.post("gh", body, h), sha256_hex(body))

    def test_hmac_github_style_bad_signature_401(self):
        body = unique_body("ghbad")
        h = dict(JSON_CT)
        h["X-Hub-Signature-256"] = "sha256=" + hmac_hex(GH_SECRET + "x", body)
        r = self.srv.post("gh", body, h)
        self.assertProblem(r, 401)
        self.assertNotLeaked(r.body, [GH_SECRET, hmac_hex(GH_SECRET, body),
                                      hmac_b64(GH_SECRET, body)], "the 401 body")
        # and without the header at all
        r = self.srv.post("gh", body, JSON_CT)
        self.assertProblem(r, 401)
        self.assertEqual(self.srv.count_events("gh", sha256_hex(body)), 0)

    def zendesk_headers(self, body, ts_text, secret=ZD_SECRET):
        sig = hmac_b64(secret, ts_text.encode() + body)
        h = dict(JSON_CT)
        h["X-Zendesk-Webhook-Signature"] = sig
        h["X-Zendesk-Webhook-Signature-Timestamp"] = ts_text
        return h, sig

    def test_hmac_zendesk_style(self):
        body = unique_body("zd")
        h, sig = self.zendesk_headers(body, rfc3339_now())
        self.sent_signatures.append(sig)
        self.assertAccepted(self.srv.post("zd", body, h), sha256_hex(body))

    def test_hmac_zendesk_style_rejections_401(self):
        body = unique_body("zdbad")
        cases = {
            "stale timestamp": self.zendesk_headers(body, rfc3339_now(-3600))[0],
            "future timestamp": self.zendesk_headers(body, rfc3339_now(+3600))[0],
            "wrong secret": self.zendesk_headers(body, rfc3339_now(), ZD_SECRET + "x")[0],
        }
        # signed over one timestamp, sent with another: the timestamp is signed content
        h, _ = self.zendesk_headers(body, rfc3339_now(-5))
        h["X-Zendesk-Webhook-Signature-Timestamp"] = rfc3339_now()
        cases["timestamp not the signed one"] = h
        for name, headers in cases.items():
            with self.subTest(case=name):
                r = self.srv.post("zd", body, headers)
                self.assertProblem(r, 401)
                self.assertNotLeaked(r.body, [ZD_SECRET], "the 401 body")
        self.assertEqual(self.srv.count_events("zd", sha256_hex(body)), 0)

    def hubspot_headers(self, path, body, ts_ms=None, method="POST", url=None):
        ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
        url = url or "http://" + self.srv.host_header() + path
        content = method.encode() + url.encode() + body + str(ts_ms).encode()
        sig = hmac_b64(HS_SECRET, content)
        h = dict(JSON_CT)
        h["X-HubSpot-Signature-v3"] = sig
        h["X-HubSpot-Request-Timestamp"] = str(ts_ms)
        return h, sig

    def test_hmac_hubspot_v3_style(self):
        body = unique_body("hs")
        path = "/hooks/hs?portal=42&x=a%20b"
        h, sig = self.hubspot_headers(path, body)
        self.sent_signatures.append(sig)
        r = self.srv.request("POST", path, body, h)
        self.assertAccepted(r, sha256_hex(body))

    def test_hmac_hubspot_v3_signed_url_is_checked_401(self):
        body = unique_body("hsbad")
        # signed for another query string than the one requested
        h, _ = self.hubspot_headers("/hooks/hs?portal=41", body)
        r = self.srv.request("POST", "/hooks/hs?portal=42", body, h)
        self.assertProblem(r, 401)
        # stale millisecond timestamp, correctly signed
        old = int(time.time() * 1000) - 3600 * 1000
        h, _ = self.hubspot_headers("/hooks/hs", body, ts_ms=old)
        r = self.srv.request("POST", "/hooks/hs", body, h)
        self.assertProblem(r, 401)
        self.assertEqual(self.srv.count_events("hs", sha256_hex(body)), 0)

    def test_token_by_query_parameter_form_body(self):
        body = b"ticket=%d&status=open&note=a+b%%26c" % time.time_ns()
        r = self.srv.post("zap", body, FORM_CT, query="?token=" + ZAP_TOKEN)
        self.assertAccepted(r, sha256_hex(body))
        self.assertEqual(self.srv.count_events("zap", sha256_hex(body)), 1)

    def test_token_by_query_parameter_wrong_401(self):
        body = b"ticket=%d&status=open" % time.time_ns()
        for query in ("?token=" + ZAP_TOKEN + "x", "?token=nope", "", "?tok=" + ZAP_TOKEN):
            with self.subTest(query=query):
                r = self.srv.post("zap", body, FORM_CT, query=query)
                self.assertProblem(r, 401)
                self.assertNotLeaked(r.body, [ZAP_TOKEN], "the 401 body")
        self.assertEqual(self.srv.count_events("zap", sha256_hex(body)), 0)

    def basic(self, user, pw):
        return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode())
                .decode()}

    def test_basic_auth(self):
        body = unique_body("basic")
        h = dict(JSON_CT)
        h.update(self.basic(BASIC_USER, BASIC_PW))
        self.assertAccepted(self.srv.post("basic", body, h), sha256_hex(body))

    def test_basic_auth_wrong_401(self):
        body = unique_body("basicbad")
        for name, auth in (("wrong password", self.basic(BASIC_USER, BASIC_PW + "x")),
                           ("wrong user", self.basic("v", BASIC_PW)),
                           ("missing", {})):
            with self.subTest(case=name):
                h = dict(JSON_CT)
                h.update(auth)
                r = self.srv.post("basic", body, h)
                self.assertProblem(r, 401)
                self.assertNotLeaked(r.body, [BASIC_PW], "the 401 body")
        self.assertEqual(self.srv.count_events("basic", sha256_hex(body)), 0)

    def test_none_insecure_accepted(self):
        body = unique_body("open")
        self.assertAccepted(self.srv.post("open", body, JSON_CT), sha256_hex(body))

    # ---------- event ids ----------

    def test_event_id_json_pointer_integer_and_string(self):
        n = time.time_ns()
        body = json.dumps({"ticket": {"id": n}, "x": 1}).encode()
        self.assertAccepted(self.srv.post("tix", body, JSON_CT), str(n))
        # same id, different body: still a duplicate (the id is the sender's)
        body2 = json.dumps({"ticket": {"id": n}, "x": 2}).encode()
        self.assertDuplicate(self.srv.post("tix", body2, JSON_CT), str(n))
        sid = "T-%d" % n
        body3 = json.dumps({"ticket": {"id": sid}}).encode()
        self.assertAccepted(self.srv.post("tix", body3, JSON_CT), sid)
        self.assertEqual(self.srv.count_events("tix", str(n)), 1)
        self.assertEqual(self.srv.count_events("tix", sid), 1)

    def test_event_id_json_pointer_missing_400(self):
        for body in (b'{"ticket": {}}', b'{"other": 1}', b'{"ticket": {"id": null}}', b"[1,2]"):
            with self.subTest(body=body):
                r = self.srv.post("tix", body, JSON_CT)
                self.assertProblem(r, 400)

    def test_event_id_from_header(self):
        rid = "req-%d" % time.time_ns()
        body = unique_body("hdr")
        h = dict(JSON_CT)
        h["X-Request-Id"] = rid
        self.assertAccepted(self.srv.post("hdr", body, h), rid)
        self.assertDuplicate(self.srv.post("hdr", unique_body("hdr2"), h), rid)
        self.assertEqual(self.srv.count_events("hdr", rid), 1)
        r = self.srv.post("hdr", unique_body("hdr3"), JSON_CT)  # no X-Request-Id
        self.assertProblem(r, 400)

    # ---------- 404 / 405 / 415 / 413 / 400 ----------

    def test_unknown_source_404(self):
        body = unique_body("nosrc")
        h = dict(JSON_CT)
        h.update(bearer(TOK_SECRET))
        for path in ("/hooks/nosuch", "/hooks/", "/hooks/a/b", "/hooks/tok/extra", "/hooks/TOK"):
            with self.subTest(path=path):
                r = self.srv.request("POST", path, body, h)
                self.assertProblem(r, 404)
        self.assertEqual(self.srv.query("SELECT count(*) FROM events WHERE event_id=?",
                                        (sha256_hex(body),))[0][0], 0)

    def test_other_paths_and_methods(self):
        self.assertProblem(self.srv.get("/nope"), 404)
        self.assertProblem(self.srv.get("/hooks"), 404)
        for path in ("/healthz", "/readyz", "/metrics"):
            with self.subTest(path=path):
                r = self.srv.request("POST", path, b"{}", JSON_CT)
                self.assertProblem(r, 405)
                self.assertIn("GET", r.headers.get("Allow", ""))

    def test_wrong_method_405_with_allow(self):
        for method in ("GET", "PUT", "DELETE"):
            with self.subTest(method=method):
                body = None if method == "GET" else unique_body("m")
                h = dict(JSON_CT) if body else {}
                h.update(bearer(TOK_SECRET))
                r = self.srv.request(method, "/hooks/tok", body, h)
                self.assertProblem(r, 405)
                self.assertEqual(r.headers.get("Allow"), "POST")

    def test_unsupported_media_type_415(self):
        body = unique_body("mt")
        for name, ctype in (("text/plain", "text/plain"), ("missing", None),
                            ("xml", "application/xml"), ("multipart", "multipart/form-data")):
            with self.subTest(content_type=name):
                h = bearer(TOK_SECRET)
                if ctype:
                    h["Content-Type"] = ctype
                r = self.srv.post("tok", body, h)
                self.assertProblem(r, 415)
        self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 0)

    def test_body_over_limit_content_length_413(self):
        body = b'{"pad":"' + b"z" * (MAX_BODY + 10) + b'"}'
        r = self.post_tok(body)
        self.assertProblem(r, 413)
        body = b'{"pad":"' + b"z" * (MAX_BODY - 9) + b'"}'  # MAX_BODY + 1 bytes
        self.assertEqual(len(body), MAX_BODY + 1)
        r = self.post_tok(body)
        self.assertProblem(r, 413)
        self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 0)

    def test_body_over_limit_chunked_413(self):
        chunks = [b'{"pad":"'] + [b"c" * 100] * 15 + [b'"}']
        body = b"".join(chunks)
        self.assertGreater(len(body), MAX_BODY)
        h = dict(JSON_CT)
        h.update(bearer(TOK_SECRET))
        r = self.srv.post("tok", iter(chunks), h, encode_chunked=True)
        self.assertProblem(r, 413)
        self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 0)

    def test_chunked_body_within_limit_accepted(self):
        chunks = [b'{"chunked":', str(time.time_ns()).encode(), b', "pad":"', b"q" * 300, b'"}']
        body = b"".join(chunks)
        h = dict(JSON_CT)
        h.update(bearer(TOK_SECRET))
        r = self.srv.post("tok", iter(chunks), h, encode_chunked=True)
        self.assertAccepted(r, sha256_hex(body))
        stored = self.srv.query("SELECT body FROM events WHERE source='tok' AND event_id=?",
                                (sha256_hex(body),))
        self.assertEqual([bytes(x[0]) for x in stored], [body])

    def test_chunked_over_limit_raw_socket_413(self):
        """Chunked framing written by hand: many small chunks adding up past the limit."""
        head = ("POST /hooks/tok HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n"
                "Connection: close\r\n\r\n" % (self.srv.host_header(), TOK_SECRET)).encode()
        payload = b""
        for _ in range(40):
            payload += b"40\r\n" + b"w" * 64 + b"\r\n"
        payload += b"0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) as s:
            s.sendall(head)
            try:
                s.sendall(payload)
            except OSError:
                pass  # the server may answer and close before reading it all
            data = b""
            while True:
                try:
                    part = s.recv(65536)
                except OSError:
                    break
                if not part:
                    break
                data += part
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:200])

    def test_malformed_json_400(self):
        for body in (b'{"a": ', b"not json", b'{"a": 1}}', b""):
            with self.subTest(body=body):
                r = self.post_tok(body)
                self.assertProblem(r, 400)
                self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 0)

    def test_malformed_form_400(self):
        for body in (b"a=%zz", b"a=%4", b"a=b&c=%G1"):
            with self.subTest(body=body):
                r = self.srv.post("zap", body, FORM_CT, query="?token=" + ZAP_TOKEN)
                self.assertProblem(r, 400)
                self.assertEqual(self.srv.count_events("zap", sha256_hex(body)), 0)

    # ---------- health, readiness, metrics ----------

    def test_healthz_and_readyz(self):
        r = self.srv.get("/healthz")
        self.assertEqual(r.status, 200, r)
        r = self.srv.get("/readyz")
        self.assertEqual(r.status, 200, r)

    def test_metrics_counts_accepted_events(self):
        n = 4
        for _ in range(n):
            body = unique_body("metr")
            self.assertAccepted(self.post_tok(body, source="metr", token=METR_TOKEN),
                                sha256_hex(body))
        # neither a duplicate nor a refusal counts as accepted
        self.assertEqual(self.post_tok(body, source="metr", token=METR_TOKEN).status, 200)
        self.assertEqual(self.post_tok(unique_body(), source="metr", token="bad").status, 401)
        r = self.srv.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/plain"), r.headers)
        text = r.body.decode()
        self.assertIn("# TYPE hookline_events_received_total counter\n", text)
        m = re.findall(r'^hookline_events_received_total\{source="metr",status="accepted"\} '
                       r'(\S+)$', text, re.M)
        self.assertEqual(m, [str(n)], text)
        if STORE_BACKEND != "sqlite":
            # PostgreSQL dedupes by a unique constraint: no in-memory set to report.
            self.assertNotIn("hookline_dedupe_keys", text)
            return
        # The dedupe set holds at least these keys and has dropped none.
        self.assertIn("# TYPE hookline_dedupe_keys gauge\n", text)
        keys = re.findall(r"^hookline_dedupe_keys (\S+)$", text, re.M)
        self.assertEqual(len(keys), 1, text)
        self.assertGreaterEqual(float(keys[0]), n)
        self.assertIn("# TYPE hookline_dedupe_evicted_total counter\n", text)
        self.assertEqual(re.findall(r"^hookline_dedupe_evicted_total (\S+)$", text, re.M),
                         ["0"], text)

    # ---------- storage details ----------

    def test_stored_headers_are_redacted(self):
        body = unique_body("redact")
        self.assertAccepted(self.post_tok(body, {"X-Custom": "kept"}), sha256_hex(body))
        (headers_text,), = self.srv.query(
            "SELECT headers FROM events WHERE source='tok' AND event_id=?", (sha256_hex(body),))
        headers = json.loads(headers_text)
        self.assertEqual(headers.get("authorization"), "[redacted]", headers)
        self.assertEqual(headers.get("x-custom"), "kept", headers)
        self.assertNotIn(TOK_SECRET, headers_text)

    def test_stored_signature_headers_are_redacted(self):
        body = unique_body("redactsw")
        msg_id = "msg_%d_redact" % time.time_ns()
        h = sw_headers(CRM_SECRET, msg_id, body)
        self.assertAccepted(self.srv.post("crm", body, h), msg_id)
        (text,), = self.srv.query("SELECT headers FROM events WHERE source='crm' AND event_id=?",
                                  (msg_id,))
        self.assertEqual(json.loads(text).get("webhook-signature"), "[redacted]")
        self.assertNotIn(h["webhook-signature"][3:], text)

    # ---------- concurrency / group commit ----------

    def test_concurrent_200_requests_from_20_threads(self):
        threads, per_thread = 20, 10
        results = []
        lock = threading.Lock()
        start = threading.Barrier(threads)

        def worker(t):
            out = []
            try:
                start.wait(10)
            except threading.BrokenBarrierError:
                pass
            for i in range(per_thread):
                body = json.dumps({"t": t, "i": i, "nonce": time.time_ns()}).encode()
                try:
                    r = self.srv.post("conc", body, dict(JSON_CT, **bearer(CONC_TOKEN)))
                    out.append((sha256_hex(body), r.status, r.body))
                except (OSError, http.client.HTTPException) as e:
                    out.append((sha256_hex(body), None, repr(e).encode()))
            with lock:
                results.extend(out)

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in ts), "workers did not finish in 60 s")
        self.assertEqual(len(results), threads * per_thread)
        bad = [(s, b) for _, s, b in results if s != 202]
        self.assertEqual(bad, [], "non-202 answers")
        for eid, _, b in results:
            self.assertEqual(json.loads(b)["event_id"], eid)
        rows = self.srv.query("SELECT event_id FROM events WHERE source='conc'")
        ids = [r[0] for r in rows]
        self.assertEqual(len(ids), threads * per_thread)
        self.assertEqual(set(ids), {eid for eid, _, _ in results})

    def test_keep_alive_connection_survives_error_answers(self):
        """One client connection: refusals in between must not desynchronise it (an
        unread over-limit body must never be parsed as the next request)."""
        conn = self.srv.connection()
        self.addCleanup(conn.close)
        good = dict(JSON_CT, **bearer(TOK_SECRET))
        steps = [
            (unique_body("ka"), good, 202),
            (b'{"pad":"' + b"k" * (2 * MAX_BODY) + b'"}', good, 413),
            (unique_body("ka"), good, 202),
            (unique_body("ka"), dict(good, **{"Content-Type": "text/plain"}), 415),
            (unique_body("ka"), good, 202),
            (unique_body("ka"), dict(JSON_CT, **bearer("nope")), 401),
            (unique_body("ka"), good, 202),
            (b'{"broken": ', good, 400),
            (unique_body("ka"), good, 202),
        ]
        for i, (body, headers, want) in enumerate(steps):
            conn.request("POST", "/hooks/tok", body, headers)
            resp = conn.getresponse()
            data = resp.read()
            self.assertEqual(resp.status, want, (i, data))
            if want == 202:
                self.assertEqual(json.loads(data)["event_id"], sha256_hex(body))
                self.assertEqual(self.srv.count_events("tok", sha256_hex(body)), 1)

    def test_concurrent_resends_of_one_event_store_it_once(self):
        body = unique_body("same")
        eid = sha256_hex(body)
        statuses = []
        lock = threading.Lock()
        barrier = threading.Barrier(10)

        def worker():
            try:
                barrier.wait(10)
            except threading.BrokenBarrierError:
                pass
            r = self.post_tok(body)
            with lock:
                statuses.append((r.status, r.json()))

        ts = [threading.Thread(target=worker) for _ in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(sorted(s for s, _ in statuses), [200] * 9 + [202], statuses)
        for _, j in statuses:
            self.assertEqual(j["event_id"], eid)
        self.assertEqual(self.srv.count_events("tok", eid), 1)

    # ---------- no secret leaks (runs last in this class: sees all its traffic) ----------

    def test_zz_no_secret_leaks_in_logs_responses_or_audit(self):
        # Traffic with every credential, right and wrong (wrong ones embed the real one).
        body = unique_body("leak")
        self.post_tok(body)
        self.post_tok(unique_body("leak"), token=TOK_SECRET + "-wrong")
        self.post_tok(unique_body("leak"), token=TOK_SECRET[:-1])
        for secret, source in ((CRM_SECRET, "crm"), (ROT_NEW, "rot"), (ROT_OLD, "rot")):
            b = unique_body("leak")
            mid = "msg_%d_leak" % time.time_ns()
            self.post_sw(source, secret, b, mid)
            self.srv.post(source, b + b" ", sw_headers(secret, mid + "x", b))  # tampered
        b = unique_body("leak")
        self.srv.post("gh", b, dict(JSON_CT, **{"X-Hub-Signature-256":
                                                "sha256=" + hmac_hex(GH_SECRET, b + b"!")}))
        self.srv.post("zd", b, self.zendesk_headers(b + b" ", rfc3339_now())[0])
        self.srv.post("hs", b, self.hubspot_headers("/hooks/other", b)[0])
        self.srv.post("zap", b"a=1", FORM_CT, query="?token=" + ZAP_TOKEN)
        self.srv.post("zap", b"a=2", FORM_CT, query="?token=" + ZAP_TOKEN + "zz")
        self.srv.post("basic", b, dict(JSON_CT, **self.basic(BASIC_USER, BASIC_PW + "!")))
        self.srv.post("basic", b, dict(JSON_CT, **self.basic(BASIC_USER, BASIC_PW)))
        time.sleep(0.3)  # let asynchronous rejection records reach the store

        needles = secret_needles()
        self.assertNotLeaked(self.srv.log_text(), needles, "the server's stderr log")
        self.assertNotLeaked(self.srv.log_text(), self.sent_signatures, "the server's stderr log")
        with self.srv._lock:
            responses = list(self.srv.responses)
        self.assertGreater(len(responses), 20)
        for i, resp in enumerate(responses):
            self.assertNotLeaked(resp, needles, "HTTP response body #%d" % i)
        records, r = self.srv.audit()
        self.assertGreater(len(records), 10)
        self.assertNotLeaked(r.stdout + r.stderr, needles, "hookline audit output")
        self.assertNotLeaked(r.stdout, self.sent_signatures, "hookline audit output")
        stored = "\n".join(h for (h,) in self.srv.query("SELECT headers FROM events"))
        self.assertNotLeaked(stored, needles, "the stored event headers")


# =====================================================================================
# Dedupe window
# =====================================================================================

class DedupeWindowTest(Assertions, unittest.TestCase):
    def test_same_body_after_window_is_accepted_again(self):
        srv = start_server(self, {"sources": {"short": token_source("TOK_SECRET",
                                                                     dedupe_window_s=1)}},
                           env=SECRET_ENV)
        body = unique_body("window")
        eid = sha256_hex(body)
        h = dict(JSON_CT, **bearer(TOK_SECRET))
        self.assertAccepted(srv.post("short", body, h), eid)
        self.assertDuplicate(srv.post("short", body, h), eid)
        time.sleep(1.6)
        self.assertAccepted(srv.post("short", body, h), eid)
        self.assertEqual(srv.count_events("short", eid), 2)
        self.assertDuplicate(srv.post("short", body, h), eid)
        self.assertEqual(srv.count_events("short", eid), 2)


# =====================================================================================
# 503 when the store cannot take the write
# =====================================================================================

class StoreUnavailableTest(Assertions, unittest.TestCase):
    @sqlite_only("locks the SQLite file from another process (BEGIN EXCLUSIVE) and uses its "
                 "busy_timeout_ms; a PostgreSQL outage is the conformance suite's restart test")
    def test_503_retry_after_while_database_locked_then_recovers(self):
        srv = start_server(self, {"store": {"busy_timeout_ms": 200},
                                  "sources": {"tok": token_source("TOK_SECRET")}},
                           env=SECRET_ENV)
        h = dict(JSON_CT, **bearer(TOK_SECRET))
        warm = unique_body("warm")
        self.assertAccepted(srv.post("tok", warm, h), sha256_hex(warm))
        self.assertEqual(srv.get("/readyz").status, 200)

        body = unique_body("locked")
        eid = sha256_hex(body)
        locker = sqlite3.connect(srv.db_path, isolation_level=None, timeout=5)
        self.addCleanup(locker.close)
        locker.execute("BEGIN EXCLUSIVE")
        released = False
        try:
            t0 = time.monotonic()
            r = srv.post("tok", body, h)
            self.assertProblem(r, 503)
            ra = r.headers.get("Retry-After")
            self.assertIsNotNone(ra, "503 without Retry-After")
            self.assertRegex(ra, r"^\d+$")
            self.assertGreaterEqual(int(ra), 1)
            self.assertLess(time.monotonic() - t0, 10)
            # never a 2xx for an event that is not stored; and indeed it is not stored
            n = locker.execute("SELECT count(*) FROM events WHERE source='tok' AND event_id=?",
                               (eid,)).fetchone()[0]
            self.assertEqual(n, 0)
            rz = srv.get("/readyz")
            self.assertProblem(rz, 503)
            locker.execute("ROLLBACK")
            released = True
        finally:
            if not released:
                locker.execute("ROLLBACK")
            locker.close()
        # the commit-failed state holds until a write succeeds
        self.assertProblem(srv.get("/readyz"), 503)
        self.assertAccepted(srv.post("tok", body, h), eid)
        self.assertEqual(srv.count_events("tok", eid), 1)
        self.assertEqual(srv.get("/readyz").status, 200)
        self.assertNotLeaked(srv.log_text(), [TOK_SECRET], "the log")
        # the failed commit left no trace in the audit chain: one event.received, intact
        recs = srv.wait_audit(lambda rs: len(rs) >= 1, "--event", eid)
        self.assertEqual([r["kind"] for r in recs], ["event.received"])
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)

    def test_full_write_queue_answers_503_never_a_false_202(self):
        srv = start_server(self, {"store": {"queue_max": 1, "batch_max": 1},
                                  "sources": {"tok": token_source("TOK_SECRET")}},
                           env=SECRET_ENV)
        h = dict(JSON_CT, **bearer(TOK_SECRET))
        results = []
        lock = threading.Lock()

        def worker(t):
            for i in range(5):
                body = json.dumps({"t": t, "i": i, "nonce": time.time_ns()}).encode()
                r = srv.post("tok", body, h)
                with lock:
                    results.append((sha256_hex(body), r))

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(len(results), 100)
        stored = {row[0] for row in srv.query("SELECT event_id FROM events")}
        for eid, r in results:
            self.assertIn(r.status, (202, 503), r)
            if r.status == 202:
                self.assertIn(eid, stored, "answered 202 but not stored")
            else:
                self.assertProblem(r, 503)
                self.assertRegex(r.headers.get("Retry-After") or "", r"^\d+$")
                self.assertNotIn(eid, stored, "answered 503 but stored")
        self.assertEqual(len(stored), sum(1 for _, r in results if r.status == 202))


# =====================================================================================
# Audit trail: CLI output, filters, verify and tampering
# =====================================================================================

AUDIT_CONFIG = {"sources": {"tok": token_source("TOK_SECRET"),
                            "crm": {"verify": {"scheme": "standard-webhooks",
                                               "secret": "env:CRM_SECRET"}}}}


def populate_audit(testcase):
    """Runs a server through accepted, duplicate and rejected events; returns
    (server stopped, [(kind, source, event_id)] expected in order)."""
    srv = start_server(testcase, AUDIT_CONFIG, env=SECRET_ENV)
    h = dict(JSON_CT, **bearer(TOK_SECRET))
    a, b = unique_body("audit-a"), unique_body("audit-b")
    mid = "msg_%d_audit" % time.time_ns()
    steps = []
    testcase.assertEqual(srv.post("tok", a, h).status, 202)
    steps.append(("event.received", "tok", sha256_hex(a)))
    testcase.assertEqual(srv.post("tok", a, h).status, 200)
    steps.append(("event.duplicate", "tok", sha256_hex(a)))
    testcase.assertEqual(srv.post("tok", b, dict(JSON_CT, **bearer("wrong"))).status, 401)
    steps.append(("event.rejected", "tok", None))
    testcase.assertEqual(srv.post("crm", b, sw_headers(CRM_SECRET, mid, b)).status, 202)
    steps.append(("event.received", "crm", mid))
    testcase.assertEqual(srv.post("crm", b, sw_headers(ROT_OTHER, mid + "-x", b)).status, 401)
    steps.append(("event.rejected", "crm", None))
    testcase.assertEqual(srv.post("tok", b, h).status, 202)
    steps.append(("event.received", "tok", sha256_hex(b)))
    srv.wait_audit(lambda rs: len(rs) >= len(steps))
    return srv, steps


class AuditTest(Assertions, unittest.TestCase):
    def test_audit_json_records_and_filters(self):
        srv, steps = populate_audit(self)
        records, r = srv.audit()
        self.assertEqual(len(records), len(steps), r.stdout)
        self.assertEqual(len(r.stdout.strip().splitlines()), len(steps))
        for i, (rec, (kind, source, eid)) in enumerate(zip(records, steps)):
            with self.subTest(seq=i + 1):
                for field in ("seq", "time", "kind", "source", "detail", "prev_hash", "hash"):
                    self.assertIn(field, rec)
                self.assertEqual(rec["seq"], i + 1)
                self.assertEqual(rec["kind"], kind)
                self.assertEqual(rec["source"], source)
                if eid is not None:
                    self.assertEqual(rec["event_id"], eid)
                self.assertRegex(rec["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
                self.assertIsInstance(rec["detail"], dict)
                self.assertRegex(rec["hash"], r"^[0-9a-f]{64}$")
                if i > 0:
                    self.assertEqual(rec["prev_hash"], records[i - 1]["hash"])
        self.assertEqual(records[2]["detail"].get("status"), 401, records[2])

        rej, _ = srv.audit("--kind", "event.rejected")
        self.assertEqual([x["seq"] for x in rej], [3, 5])
        self.assertTrue(all(x["kind"] == "event.rejected" for x in rej))
        crm, _ = srv.audit("--source", "crm")
        self.assertEqual([x["seq"] for x in crm], [4, 5])
        last2, _ = srv.audit("--limit", "2")
        self.assertEqual([x["seq"] for x in last2], [5, 6])
        both, _ = srv.audit("--source", "tok", "--kind", "event.received")
        self.assertEqual([x["seq"] for x in both], [1, 6])
        ev, _ = srv.audit("--event", steps[0][2])
        self.assertEqual([x["kind"] for x in ev], ["event.received", "event.duplicate"])
        since, _ = srv.audit("--since", "1h")
        self.assertEqual(len(since), len(steps))
        self.assertEqual(srv.audit("--since", "2999-01-01T00:00:00Z")[0], [])
        self.assertEqual(srv.audit("--until", "2000-01-01T00:00:00Z")[0], [])
        self.assertEqual(len(srv.audit("--until", "2999-01-01T00:00:00Z")[0]), len(steps))

        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)
        # reading the audit beside a live server works too; then stop cleanly
        self.assertEqual(srv.stop(), 0)
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)

    def test_audit_reads_without_webhook_secrets_in_environment(self):
        """`hookline audit` and `audit verify` resolve every webhook secret
        of the config and exit 1 ("environment variable TOK_SECRET is not set") when the
        operator's shell lacks them, although reading the audit trail never uses them;
        an auditor must not need the webhook secrets to read the trail."""
        srv, steps = populate_audit(self)
        r = run_cli(["audit", "-c", srv.config_path, "--format", "json"])  # no secrets in env
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(parse_json_lines(r.stdout)), len(steps))
        r = run_cli(["audit", "verify", "-c", srv.config_path])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_audit_verify_detects_edited_record(self):
        srv, steps = populate_audit(self)
        self.assertEqual(srv.stop(), 0)
        self.assertEqual(srv.cli("audit", "verify", "-c", srv.config_path).returncode, 0)
        conn = srv.db(write=True)
        try:
            (text,), = conn.execute("SELECT record FROM audit WHERE seq = 4").fetchall()
            m = re.search(r'"bytes":(\d+)', text)
            self.assertIsNotNone(m, text)
            edited = text.replace(m.group(0), '"bytes":%d' % (int(m.group(1)) + 1), 1)
            self.assertNotEqual(edited, text)
            conn.execute("UPDATE audit SET record = ? WHERE seq = 4", (edited,))
        finally:
            conn.close()
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 1, v)
        self.assertRegex(v.stderr, r"\bseq 4\b")
        self.assertEqual(len(v.stderr.strip().splitlines()), 1, v.stderr)

    def test_audit_verify_detects_deleted_record(self):
        srv, steps = populate_audit(self)
        self.assertEqual(srv.stop(), 0)
        conn = srv.db(write=True)
        try:
            conn.execute("DELETE FROM audit WHERE seq = 3")
        finally:
            conn.close()
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 1, v)
        self.assertRegex(v.stderr, r"\bseq 3\b")


# =====================================================================================
# Graceful shutdown
# =====================================================================================

class ShutdownTest(Assertions, unittest.TestCase):
    CONFIG = {"sources": {"tok": token_source("TOK_SECRET")}}

    def test_sigterm_with_20_requests_in_flight(self):
        srv = start_server(self, self.CONFIG, env=SECRET_ENV)
        n = 20
        outcomes = [None] * n
        barrier = threading.Barrier(n + 1)

        def worker(i):
            body = json.dumps({"shutdown": i, "nonce": time.time_ns()}).encode()
            try:
                barrier.wait(10)
            except threading.BrokenBarrierError:
                pass
            try:
                r = srv.post("tok", body, dict(JSON_CT, **bearer(TOK_SECRET)), timeout=20)
                outcomes[i] = (sha256_hex(body), r.status, r.body)
            except (OSError, http.client.HTTPException) as e:
                outcomes[i] = (sha256_hex(body), None, repr(e))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        barrier.wait(10)
        time.sleep(0.005)
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(15)
        for t in ts:
            t.join(20)
        self.assertEqual(rc, 0, "exit code after SIGTERM (None: still running after 15 s)")
        answered = [o for o in outcomes if o and o[1] is not None]
        self.assertEqual([o for o in answered if o[1] != 202], [], "non-202 answers")
        stored = {r[0] for r in srv.query("SELECT event_id FROM events WHERE source='tok'")}
        for eid, _, _ in answered:
            self.assertIn(eid, stored, "answered 202 but not stored")
        self.assertIn('"msg":"stopped"', srv.log_text())

    def test_sigterm_waits_for_requests_whose_body_is_still_arriving(self):
        srv = start_server(self, self.CONFIG, env=SECRET_ENV)
        socks = []
        bodies = []
        for i in range(5):
            body = json.dumps({"slow": i, "nonce": time.time_ns(), "pad": "p" * 200}).encode()
            bodies.append(body)
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
            self.addCleanup(s.close)
            s.sendall(("POST /hooks/tok HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                       "Authorization: Bearer %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                       % (srv.host_header(), TOK_SECRET, len(body))).encode() + body[:50])
            socks.append(s)
        time.sleep(0.3)  # the server has the headers and part of each body
        srv.signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertTrue(srv.running(), "exited without waiting for in-flight requests")
        answers = []
        for s, body in zip(socks, bodies):
            s.sendall(body[50:])
        for s in socks:
            data = b""
            while True:
                try:
                    part = s.recv(65536)
                except OSError:
                    break
                if not part:
                    break
                data += part
            answers.append(data)
        rc = srv.wait_exit(15)
        self.assertEqual(rc, 0)
        for body, data in zip(bodies, answers):
            self.assertTrue(data.startswith(b"HTTP/1.1 202"), data[:200])
            self.assertIn(sha256_hex(body).encode(), data)
            self.assertEqual(srv.count_events("tok", sha256_hex(body)), 1)


    @sqlite_only("locks the SQLite file from another process (BEGIN EXCLUSIVE) to hold a "
                 "write back")
    def test_sigterm_finishes_a_request_waiting_for_a_locked_store(self):
        srv = start_server(self, self.CONFIG, env=SECRET_ENV)
        h = dict(JSON_CT, **bearer(TOK_SECRET))
        self.assertEqual(srv.post("tok", unique_body("warm"), h).status, 202)
        locker = sqlite3.connect(srv.db_path, isolation_level=None, timeout=5)
        self.addCleanup(locker.close)
        locker.execute("BEGIN EXCLUSIVE")
        body = unique_body("waiting")
        out = []
        t = threading.Thread(target=lambda: out.append(srv.post("tok", body, h, timeout=30)))
        t.start()
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        time.sleep(1.0)
        still_running = srv.running()
        locker.execute("ROLLBACK")
        locker.close()
        t.join(20)
        rc = srv.wait_exit(15)
        self.assertTrue(still_running, "exited while a request was waiting for the store")
        self.assertEqual(rc, 0)
        self.assertEqual(len(out), 1)
        self.assertAccepted(out[0], sha256_hex(body))
        self.assertEqual(srv.count_events("tok", sha256_hex(body)), 1)

    def test_sigterm_with_a_stalled_client_exits_within_bound(self):
        srv = start_server(self, self.CONFIG, env=SECRET_ENV)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
        self.addCleanup(s.close)
        s.sendall(("POST /hooks/tok HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: 100\r\n\r\n{" % srv.host_header()).encode())
        time.sleep(0.2)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(15)
        self.assertEqual(rc, 0, "a client that never finishes its body must not block shutdown")
        self.assertLess(time.monotonic() - t0, 15)


# =====================================================================================
# Durability across SIGKILL
# =====================================================================================

class DurabilityTest(Assertions, unittest.TestCase):
    def test_every_202_survives_sigkill(self):
        srv = start_server(self, {"sources": {"tok": token_source("TOK_SECRET")}},
                           env=SECRET_ENV)
        h = dict(JSON_CT, **bearer(TOK_SECRET))
        accepted = []  # (event_id, body)
        lock = threading.Lock()

        def worker(t):
            for i in range(5):
                body = json.dumps({"conc": t, "i": i, "nonce": time.time_ns()}).encode()
                r = srv.post("tok", body, h)
                if r.status == 202:
                    with lock:
                        accepted.append((sha256_hex(body), body))

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        for i in range(100):
            body = json.dumps({"seq": i, "nonce": time.time_ns()}).encode()
            r = srv.post("tok", body, h)
            self.assertEqual(r.status, 202, r)
            with lock:
                accepted.append((sha256_hex(body), body))
        for t in ts:
            t.join(30)
        last = json.dumps({"last": True, "nonce": time.time_ns()}).encode()
        r = srv.post("tok", last, h)
        self.assertEqual(r.status, 202, r)
        srv.kill()  # SIGKILL right after the last 202
        accepted.append((sha256_hex(last), last))
        self.assertEqual(len(accepted), 121)

        srv.start()
        stored = {row[0] for row in srv.query("SELECT event_id FROM events WHERE source='tok'")}
        missing = [eid for eid, _ in accepted if eid not in stored]
        self.assertEqual(missing, [], "events answered 202 but lost after SIGKILL")
        for eid, body in accepted:
            self.assertDuplicate(srv.post("tok", body, h), eid)
        self.assertEqual(srv.count_events("tok"), 121)
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)


# =====================================================================================
# Schema migrations on an old database
# =====================================================================================

V1_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY, source TEXT NOT NULL, event_id TEXT NOT NULL,
  dedupe_key TEXT, received_at REAL NOT NULL, status TEXT NOT NULL,
  content_type TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL,
  UNIQUE (source, dedupe_key));
CREATE INDEX events_by_event_id ON events (event_id);
"""


@sqlite_only("builds a schema-1 SQLite file (PRAGMA user_version) and checks its migration; "
             "PostgreSQL's migrations have their own tests")
class MigrationTest(Assertions, unittest.TestCase):
    def test_version_1_database_is_migrated(self):
        tmp = make_tmpdir()
        srv = HooklineServer({"sources": {"tok": token_source("TOK_SECRET",
                                                               event_id="header:X-Id")}},
                             env=SECRET_ENV, tmpdir=tmp)
        self.addCleanup(srv.cleanup)
        self.addCleanup(shutil.rmtree, tmp, True)
        conn = sqlite3.connect(srv.db_path, isolation_level=None)
        conn.executescript(V1_SCHEMA)
        conn.execute("INSERT INTO events (source, event_id, dedupe_key, received_at, status, "
                     "content_type, headers, body) VALUES ('tok', 'old-1', 'old-1', ?, "
                     "'accepted', 'application/json', '{}', ?)", (time.time(), b'{"old":1}'))
        conn.execute("PRAGMA user_version=1")
        conn.close()

        srv.start()
        ver = run_cli(["version"])
        m = re.search(r"sqlite schema (\d+)", ver.stdout)
        schema = int(m.group(1)) if m else 3
        self.assertGreaterEqual(schema, 3)
        self.assertEqual(srv.query("PRAGMA user_version")[0][0], schema)
        self.assertEqual(srv.query("SELECT source, event_id, body FROM events WHERE id = 1"),
                         [("tok", "old-1", b'{"old":1}')])
        h = dict(JSON_CT, **bearer(TOK_SECRET))
        self.assertDuplicate(srv.post("tok", b'{"again":1}', dict(h, **{"X-Id": "old-1"})),
                             "old-1")
        self.assertAccepted(srv.post("tok", b'{"new":1}', dict(h, **{"X-Id": "new-1"})), "new-1")
        self.assertEqual(srv.count_events("tok"), 2)
        # the CLI can read the migrated file, and a restart does not migrate twice
        self.assertEqual(srv.stop(), 0)
        srv.start()
        self.assertDuplicate(srv.post("tok", b'{"again":2}', dict(h, **{"X-Id": "new-1"})),
                             "new-1")
        recs, _ = srv.audit()
        self.assertEqual([r["kind"] for r in recs],
                         ["event.duplicate", "event.received", "event.duplicate"])


if __name__ == "__main__":
    unittest.main()

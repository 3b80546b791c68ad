"""DIDWW API versions end to end: hookline against didww-sim for every released version, and
the bearer-token lifecycle of 2026-11-19.

- Each accepted version sends its generation's exact PATCH (path, body, X-DIDWW-API-Version)
  and authenticates the way that version wants: Api-Key up to 2026-04-16, a bearer token
  (no Api-Key) on 2026-11-19.
- 2026-11-19: one token minted on first need and shared by four workers (one POST /token
  with aud/scope/api_version/expires_in); renewed before it expires, not per request (no
  /v3 401 while the simulator grants 4-second tokens); a revoked token answered 401 makes
  hookline mint once and retry, and the job is done without a pause (a new token refused too
  pauses delivery after that one retry); a token endpoint that
  refuses the key (401 invalid_client) pauses delivery with a reason that says so and
  nothing reaches /v3; a 429 from the token endpoint is honoured (no second mint before its
  Retry-After); the account budget's 429 too_many_requests holds delivery back for its
  Retry-After and every job still ends done.
- The token appears nowhere: hookline's log, the audit trail, /metrics, /readyz.
- A rule that puts 11 trunks in a group under 2026-11-19 fails at main.lua:line, and
  nothing is planned.

Run: HOOKLINE_BIN=$PWD/build/hookline python3 tests/integration/test_didww_versions.py -v
"""

import hashlib
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sim_harness import (  # noqa: E402
    DID_A,
    DID_B,
    DID_UK,
    GROUP_SUPPORT,
    TRUNK_OFFICE,
    TRUNK_SUP_A,
    deadline_poll,
    delivery_config,
    delivery_server,
    make_state,
    start_sim,
)

KEY = "didww-versions-key-51d2c7e0"
WRONG_KEY = "didww-versions-wrong-9a0b3e"
ADMIN_TOKEN = "admin-versions-token-6f1e2d"
JSON_CT = {"Content-Type": "application/json"}
VERSIONS = ("2017-09-18", "2021-04-19", "2021-12-15", "2022-05-10", "2026-04-16", "2026-11-19")
BEARER = "2026-11-19"

RULE = r"""
function on_event(ev)
  for _, a in ipairs(ev.body.routes or {}) do
    didww.route_did{did = a.did, trunk = a.trunk}
  end
  if ev.body.group then
    didww.set_group_trunks{trunk_group = ev.body.group, trunks = ev.body.trunks}
  end
end
"""


def fingerprint(secret):
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def did_patch_body(version, did, trunk):
    legacy = version in ("2017-09-18", "2021-04-19")
    t, g = ("trunk", "trunk_group") if legacy else ("voice_in_trunk", "voice_in_trunk_group")
    return {"data": {"type": "dids", "id": did, "relationships": {
        t: {"data": {"type": t + "s", "id": trunk}}, g: {"data": None}}}}


class VersionsTestCase(unittest.TestCase):
    maxDiff = 4000

    def sim(self, *args, **kw):
        return start_sim(self, *args, key=KEY, **kw)

    def hookline(self, sim, version=BEARER, api_key=KEY, workers=4, extra_didww=None, **cfg):
        config = delivery_config(sim, workers=workers, skip_noop=False, **cfg)
        config["didww"]["api_version"] = version
        config["didww"].update(extra_didww or {})
        return delivery_server(self, config, RULE, api_key, ADMIN_TOKEN)

    def post(self, srv, event_id, body, jobs):
        body = dict(body, id=event_id)
        r = srv.post("crm", json.dumps(body).encode(), JSON_CT)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["jobs"], jobs, r.json())
        return r.json()

    def job_states(self, srv):
        return [r[0] for r in srv.query("SELECT state FROM jobs ORDER BY id")]

    def wait_done(self, srv, count, timeout=20):
        ok = deadline_poll(lambda: self.job_states(srv) == ["done"] * count, timeout, 0.1)
        if not ok:
            self.fail("jobs %r, not %d done\n%s" % (self.job_states(srv), count,
                                                      "\n".join(srv.stderr_lines[-15:])))

    def audit(self, srv, kind=None):
        records, _ = srv.audit()
        return [r for r in records if kind is None or r["kind"] == kind]

    def tokens(self, sim):
        status, doc = sim.control("GET", "/__sim/auth")
        self.assertEqual(status, 200, doc)
        return [t["access_token"] for t in doc["tokens"]]

    def configure(self, sim, **settings):
        status, doc = sim.control("POST", "/__sim/auth", settings)
        self.assertEqual(status, 200, doc)

    @staticmethod
    def calls(sim):
        return [e for e in sim.requests()]

    def assert_secrets_nowhere(self, srv, secrets):
        """Not in the log, the audit trail (every record), /metrics, /readyz."""
        audit_text = json.dumps(self.audit(srv))
        texts = {"log": srv.log_text(), "audit": audit_text,
                 "metrics": srv.get("/metrics").body.decode(),
                 "readyz": srv.get("/readyz").body.decode()}
        for secret in secrets:
            for where, text in texts.items():
                self.assertNotIn(secret, text, "a secret is in the %s" % where)


class TestEveryVersion(VersionsTestCase):

    def test_each_version_sends_its_bodies_and_its_authentication(self):
        for version in VERSIONS:
            with self.subTest(version=version):
                sim = self.sim()
                srv = self.hookline(sim, version=version, workers=1)
                self.post(srv, "v-" + version, {"routes": [{"did": DID_A,
                                                            "trunk": TRUNK_OFFICE}]}, 1)
                self.wait_done(srv, 1)
                v3 = [e for e in sim.requests() if e["path"].startswith("/v3/")]
                self.assertEqual([(e["method"], e["path"], e["status"]) for e in v3],
                                 [("PATCH", "/v3/dids/" + DID_A, 200)])
                e = v3[0]
                self.assertEqual(e["body"], did_patch_body(version, DID_A, TRUNK_OFFICE))
                self.assertEqual(e["headers"]["x-didww-api-version"], version)
                self.assertEqual(e["headers"]["content-type"], "application/vnd.api+json")
                tokens = [x for x in sim.requests() if x["path"] == "/token"]
                if version == BEARER:
                    self.assertNotIn("api-key", e["headers"])
                    self.assertEqual(len(tokens), 1)
                    self.assertEqual(e["headers"]["authorization"],
                                     fingerprint("Bearer " + self.tokens(sim)[0]))
                else:
                    self.assertEqual(e["headers"]["api-key"], fingerprint(KEY))
                    self.assertNotIn("authorization", e["headers"])
                    self.assertEqual(tokens, [])
                self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_OFFICE)
                srv.cleanup()
                sim.cleanup()

    def test_2026_11_19_group_cap_fails_at_the_rule_line(self):
        sim = self.sim()
        srv = self.hookline(sim)
        trunks = ["ca7da6d0-aa0b-447d-8fc0-%012d" % i for i in range(11)]
        r = srv.post("crm", json.dumps({"id": "cap-1", "group": GROUP_SUPPORT,
                                        "trunks": trunks}).encode(), JSON_CT)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["jobs"], 0, r.json())
        failed = srv.wait_audit(lambda rs: any(x["kind"] == "rule.failed" for x in rs))
        msgs = [x["detail"] for x in failed if x["kind"] == "rule.failed"]
        self.assertTrue(msgs, [x["kind"] for x in failed])
        text = json.dumps(msgs)
        self.assertIn("main.lua:7: didww.set_group_trunks: field 'trunks' has 11 entries; API "
                      "version 2026-11-19 allows at most 10 trunks in a trunk group", text)
        self.assertEqual([e for e in sim.requests() if e["path"].startswith("/v3/")], [])


class TestBearerLifecycle(VersionsTestCase):

    def test_one_token_shared_by_four_workers_and_never_shown(self):
        state, extra = make_state(12)
        sim = self.sim(state=state)
        srv = self.hookline(sim, workers=4)
        for i, (did, _number) in enumerate(extra):
            self.post(srv, "s-%d" % i, {"routes": [{"did": did, "trunk": TRUNK_SUP_A}]}, 1)
        self.wait_done(srv, len(extra))
        log = sim.requests()
        mints = [e for e in log if e["path"] == "/token"]
        self.assertEqual(len(mints), 1, [(e["method"], e["path"]) for e in log])
        self.assertEqual(mints[0]["method"], "POST")
        self.assertEqual(mints[0]["body"], {"aud": "api.didww.com", "scope": "full",
                                            "api_version": BEARER, "expires_in": 900})
        self.assertEqual(mints[0]["headers"]["api-key"], fingerprint(KEY))
        self.assertEqual(mints[0]["status"], 200)
        token = self.tokens(sim)[0]
        v3 = [e for e in log if e["path"].startswith("/v3/")]
        self.assertEqual(len(v3), len(extra))
        for e in v3:
            self.assertEqual(e["status"], 200, e)
            self.assertEqual(e["headers"]["authorization"], fingerprint("Bearer " + token))
            self.assertNotIn("api-key", e["headers"])
        self.assert_secrets_nowhere(srv, [token, KEY])

    def test_renewed_before_expiry_not_per_request(self):
        sim = self.sim()
        self.configure(sim, max_ttl_s=4)  # the simulator grants 4 s whatever is asked
        srv = self.hookline(sim, workers=2)
        dids = [DID_A, DID_B, DID_UK]
        n = 0
        start = time.monotonic()
        while time.monotonic() - start < 7.0:  # bounded: about 14 events over 7 s
            self.post(srv, "r-%d" % n, {"routes": [{"did": dids[n % 3],
                                                    "trunk": TRUNK_OFFICE}]}, 1)
            n += 1
            time.sleep(0.5)
        self.wait_done(srv, n)
        log = sim.requests()
        mints = [e for e in log if e["path"] == "/token"]
        v3 = [e for e in log if e["path"].startswith("/v3/")]
        # Renewed (a 4 s token cannot cover 7 s), but not per request, and always in time:
        # DIDWW never saw an expired token.
        self.assertGreaterEqual(len(mints), 2)
        self.assertLessEqual(len(mints), 4, len(mints))
        self.assertGreater(len(v3), len(mints) * 2)
        self.assertEqual([e["status"] for e in v3], [200] * len(v3))
        self.assertEqual(self.audit(srv, "delivery.paused"), [])
        self.assert_secrets_nowhere(srv, self.tokens(sim) + [KEY])

    def test_revoked_token_401_mints_once_and_retries(self):
        sim = self.sim()
        srv = self.hookline(sim, workers=2)
        self.post(srv, "x-1", {"routes": [{"did": DID_A, "trunk": TRUNK_OFFICE}]}, 1)
        self.wait_done(srv, 1)
        self.configure(sim, revoke=True)
        self.post(srv, "x-2", {"routes": [{"did": DID_B, "trunk": TRUNK_OFFICE}]}, 1)
        self.wait_done(srv, 2)
        seq = [(e["method"], e["path"].split("?")[0], e["status"]) for e in sim.requests()]
        self.assertEqual(seq, [("POST", "/token", 200),
                               ("PATCH", "/v3/dids/" + DID_A, 200),
                               ("PATCH", "/v3/dids/" + DID_B, 401),
                               ("POST", "/token", 200),
                               ("PATCH", "/v3/dids/" + DID_B, 200)])
        self.assertEqual(self.audit(srv, "delivery.paused"), [])
        self.assertEqual(srv.get("/readyz").status, 200)
        self.assert_secrets_nowhere(srv, self.tokens(sim) + [KEY])

    def test_fresh_token_refused_too_pauses_after_one_retry(self):
        sim = self.sim()
        srv = self.hookline(sim, workers=2)
        self.configure(sim, refuse_tokens=True)
        self.post(srv, "f-1", {"routes": [{"did": DID_A, "trunk": TRUNK_OFFICE}]}, 1)
        paused = srv.wait_audit(lambda rs: any(x["kind"] == "delivery.paused" for x in rs))
        paused = [x for x in paused if x["kind"] == "delivery.paused"]
        self.assertEqual(len(paused), 1, paused)
        self.assertIn("newly minted bearer token", paused[0]["detail"]["reason"])
        time.sleep(1.0)
        seq = [(e["method"], e["path"], e["status"]) for e in sim.requests()]
        self.assertEqual(seq, [("POST", "/token", 200), ("PATCH", "/v3/dids/" + DID_A, 401),
                               ("POST", "/token", 200), ("PATCH", "/v3/dids/" + DID_A, 401)])
        self.assertEqual(self.job_states(srv), ["pending"])
        self.assert_secrets_nowhere(srv, self.tokens(sim) + [KEY])

    def test_token_endpoint_refusing_the_key_pauses_with_a_clear_reason(self):
        sim = self.sim()
        srv = self.hookline(sim, api_key=WRONG_KEY)
        self.post(srv, "k-1", {"routes": [{"did": DID_A, "trunk": TRUNK_OFFICE}]}, 1)
        paused = srv.wait_audit(lambda rs: any(x["kind"] == "delivery.paused" for x in rs))
        paused = [x for x in paused if x["kind"] == "delivery.paused"]
        self.assertEqual(len(paused), 1, paused)
        reason = paused[0]["detail"]["reason"]
        self.assertIn("token endpoint", reason)
        self.assertIn("401 invalid_client", reason)
        self.assertIn("refused the API key", reason)
        self.assertTrue(deadline_poll(lambda: srv.get("/readyz").status == 503, 3))
        self.assertIn("invalid_client", srv.get("/readyz").json()["detail"])
        time.sleep(1.0)
        log = sim.requests()
        self.assertEqual([(e["method"], e["path"], e["status"]) for e in log],
                         [("POST", "/token", 401)])
        self.assertEqual(log[0]["headers"]["api-key"], fingerprint(WRONG_KEY))
        self.assertEqual(self.job_states(srv), ["pending"])
        self.assert_secrets_nowhere(srv, [WRONG_KEY])

    def test_token_endpoint_429_retry_after_is_honoured(self):
        sim = self.sim()
        self.configure(sim, fail={"status": 429, "count": 1, "retry_after": 2})
        srv = self.hookline(sim, workers=4)
        for i, did in enumerate((DID_A, DID_B, DID_UK)):
            self.post(srv, "t-%d" % i, {"routes": [{"did": did, "trunk": TRUNK_OFFICE}]}, 1)
        self.wait_done(srv, 3, timeout=30)
        log = sim.requests()
        mints = [e for e in log if e["path"] == "/token"]
        self.assertEqual([e["status"] for e in mints], [429, 200],
                         [(e["path"], e["status"]) for e in log])
        gap_s = (mints[1]["t"] - mints[0]["t"]) / 1000.0
        self.assertGreaterEqual(gap_s, 1.9, "minted again %.2f s after a Retry-After: 2" % gap_s)
        self.assertEqual([e["status"] for e in log if e["path"].startswith("/v3/")], [200] * 3)
        self.assertEqual(self.audit(srv, "delivery.paused"), [])
        self.assertEqual(self.audit(srv, "job.dead"), [])
        # The attempts that met the 429 (the one that asked, and any other worker that
        # needed a token within its Retry-After) say it came from the token endpoint.
        throttled = [r["http"] for r in self.audit(srv, "job.attempt")
                     if r.get("http", {}).get("status") == 429]
        self.assertGreaterEqual(len(throttled), 1, throttled)
        for h in throttled:
            self.assertIs(h["token_endpoint"], True, h)
            self.assertIn("token endpoint", h["error"])
        self.assertTrue(any("429 rate_limit_exceeded" in h["error"] for h in throttled),
                        throttled)

    def test_account_budget_429_is_waited_out(self):
        sim = self.sim()
        self.configure(sim, budget=2, budget_window_s=2)
        srv = self.hookline(sim, workers=2)
        for i, did in enumerate((DID_A, DID_B, DID_UK, DID_A)):
            self.post(srv, "b-%d" % i, {"routes": [{"did": did, "trunk": TRUNK_SUP_A}]}, 1)
        self.wait_done(srv, 4, timeout=30)
        v3 = [e for e in sim.requests() if e["path"].startswith("/v3/")]
        self.assertEqual(sum(e["status"] == 200 for e in v3), 4)
        throttled = [e for e in v3 if e["status"] == 429]
        self.assertTrue(throttled, [(e["path"], e["status"]) for e in v3])
        # After a 429 no request comes before the window it named has ended.
        first = throttled[0]
        later = [e for e in v3 if e["t"] > first["t"] and e["status"] == 200]
        self.assertTrue(later)
        self.assertGreaterEqual((later[0]["t"] - first["t"]) / 1000.0, 0.5)
        self.assertEqual(self.audit(srv, "job.dead"), [])


if __name__ == "__main__":
    unittest.main()

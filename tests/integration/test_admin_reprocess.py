"""Admin reload over HTTP and reprocessing of rule_failed events, with the real binary.

Covers: POST /v1/rules/reload needs the bearer token (401 without or with a wrong one),
reloads a good script (200 with the new version, audit rules.reloaded) and refuses a broken
one (422 with file:line, audit rules.reload_failed, old rule still running); `hookline events
reprocess` re-runs a fixed rule on a rule_failed event while the server runs, stores the
job once, and keeps the audit chain intact across the two processes.
"""
import json
import os
import unittest

from hookline_harness import start_server

ADMIN = "admin-token-for-tests-0123456789"
TRUNK_A = "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"
TRUNK_B = "ca7da6d0-aa0b-447d-8fc0-1bc58b51298c"

RULE = """function on_event(ev)
  didww.route_did{number = ev.body.phone, trunk = %s}
end
"""


class AdminReprocessTest(unittest.TestCase):
    def setUp(self):
        self.srv = None

    def start(self, trunk_expr):
        cfg = {
            "rules": {"script": "main.lua"},
            "admin": {"token": "env:HL_ADMIN"},
            "sources": {"zd": {"verify": {"scheme": "none", "insecure": True}}},
        }
        from hookline_harness import make_tmpdir
        tmp = make_tmpdir()
        self.rule_path = os.path.join(tmp, "main.lua")
        self.write_rule(trunk_expr)
        self.srv = start_server(self, cfg, env={"HL_ADMIN": ADMIN}, tmpdir=tmp)
        return self.srv

    def write_rule(self, trunk_expr):
        with open(self.rule_path, "w") as f:
            f.write(RULE % trunk_expr)

    def post(self, phone, trunk="x"):
        body = json.dumps({"phone": phone, "trunk": trunk}).encode()
        return self.srv.post("zd", body, {"Content-Type": "application/json"})

    def reload(self, token=ADMIN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return self.srv.request("POST", "/v1/rules/reload", b"", headers)

    def test_reload_requires_token_and_reports_outcome(self):
        srv = self.start('"%s"' % TRUNK_A)
        r = self.reload(token=None)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers["Content-Type"], "application/problem+json")
        self.assertEqual(self.reload(token="wrong-token").status, 401)

        self.write_rule('"%s"' % TRUNK_B)
        r = self.reload()
        self.assertEqual(r.status, 200, r)
        version = r.json()["rule_version"]
        self.assertRegex(version, r"^[0-9a-f]{16}$")
        self.assertEqual(self.post("+4371234567").json()["jobs"], 1)
        body = srv.query("SELECT body FROM jobs ORDER BY id DESC LIMIT 1")[0][0]
        self.assertIn(TRUNK_B, body)

        with open(self.rule_path, "w") as f:
            f.write("function on_event(ev)\n  didww.route_did{\n")
        r = self.reload()
        self.assertEqual(r.status, 422, r)
        self.assertIn("main.lua:", r.json()["detail"])
        # the last good rule keeps running
        self.assertEqual(self.post("+4371234568").json()["status"], "accepted")
        recs = srv.wait_audit(lambda rs: len(rs) >= 2, "--kind", "rules.*")
        self.assertEqual([x["kind"] for x in recs], ["rules.reloaded", "rules.reload_failed"])
        self.assertEqual(recs[0]["detail"]["rule_version"], version)
        self.assertIn("main.lua:", recs[1]["detail"]["reason"])
        # the token never shows up anywhere
        everything = srv.log_text() + "".join(b.decode("utf-8", "replace") for b in srv.responses)
        self.assertNotIn(ADMIN, everything)
        out, _ = srv.audit()
        self.assertNotIn(ADMIN, json.dumps(out))

    def test_reprocess_after_fix_while_serving(self):
        srv = self.start("ev.body.trunk")  # "x" is not a UUID: every event fails
        r = self.post("+4371234567")
        self.assertEqual(r.status, 202)
        self.assertEqual(r.json()["status"], "rule_failed")
        event_id = r.json()["event_id"]
        self.assertEqual(srv.query("SELECT count(*) FROM jobs")[0][0], 0)

        self.write_rule('"%s"' % TRUNK_A)
        res = srv.cli("events", "-c", srv.config_path, "reprocess")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(event_id + ": accepted", res.stdout)
        jobs = srv.query("SELECT path, body FROM jobs")
        self.assertEqual(len(jobs), 1)
        self.assertEqual(jobs[0][0], "/v3/dids/number:4371234567")
        self.assertIn(TRUNK_A, jobs[0][1])
        self.assertEqual(srv.query("SELECT status FROM events WHERE event_id = ?", (event_id,)),
                         [("accepted",)])
        # a second run finds nothing left to do and plans nothing twice
        res = srv.cli("events", "-c", srv.config_path, "reprocess")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(srv.query("SELECT count(*) FROM jobs")[0][0], 1)

        # the server keeps appending to the same chain after the CLI wrote to it
        self.assertEqual(self.post("+4371234569").status, 202)
        kinds = [x["kind"] for x in srv.audit("--event", event_id)[0]]
        self.assertEqual(kinds, ["event.received", "rule.failed", "admin.reprocess",
                                 "rule.decided", "job.queued"])
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)

    def test_reprocess_still_failing_exits_1(self):
        srv = self.start("ev.body.trunk")
        self.assertEqual(self.post("+4371234567").json()["status"], "rule_failed")
        res = srv.cli("events", "-c", srv.config_path, "reprocess")
        self.assertEqual(res.returncode, 1)
        self.assertIn("rule_failed", res.stdout)
        listed = srv.cli("events", "-c", srv.config_path, "list", "--status", "rule_failed")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        lines = listed.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ROW", "RECEIVED", "SOURCE", "STATUS", "EVENT"])
        self.assertEqual(len(lines), 2, listed.stdout)  # the header and the one event


if __name__ == "__main__":
    unittest.main()

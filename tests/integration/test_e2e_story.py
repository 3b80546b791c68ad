"""End to end with the real binary and didww-sim: signed webhooks, a rule, PATCHes to the
simulator, a retry after a 503, a job that DIDWW refuses (dead), a rule reload through the
admin API. Then the audit tells that DID's whole story in order, the chain verifies, and
no secret (API key, webhook token, admin token) appears in the audit output, the JSONL
mirror, the logs, the metrics or any HTTP answer.
"""
import json
import os
import unittest

from hookline_harness import HooklineServer
from sim_harness import (DID_A, TRUNK_OFFICE, TRUNK_VIP, UNKNOWN_UUID, deadline_poll,
                         start_sim)

API_KEY = "e2e-didww-api-key-7f3a9c"
WEBHOOK_TOKEN = "e2e-webhook-token-5b8e21"
ADMIN = "e2e-admin-token-0c4d7e9a1b"
RULE = """function on_event(ev)
  didww.route_did{did = ev.body.did, trunk = ev.body.trunk}
end
"""


class StoryTest(unittest.TestCase):
    def test_whole_story_of_one_did(self):
        sim = start_sim(self, "--burst-5xx", "1", key=API_KEY)  # the first request gets 503
        cfg = {
            "didww": {"base_url": sim.base_url, "api_key": "env:DIDWW_API_KEY",
                      "api_version": "2022-05-10", "timeout_ms": 2000},
            "delivery": {"workers": 2, "max_attempts": 3, "backoff_initial_ms": 50,
                         "backoff_max_ms": 200, "skip_noop": False},
            "rules": {"script": "main.lua"},
            "sources": {"crm": {"verify": {"scheme": "token", "header": "Authorization",
                                           "prefix": "Bearer ", "secret": "env:CRM_TOKEN"},
                                "event_id": "json:/id"}},
            "admin": {"token": "env:HOOKLINE_ADMIN_TOKEN"},
            "audit": {"jsonl_path": "audit.jsonl"},
        }
        srv = HooklineServer(cfg, env={"DIDWW_API_KEY": API_KEY, "CRM_TOKEN": WEBHOOK_TOKEN,
                                       "HOOKLINE_ADMIN_TOKEN": ADMIN})
        self.addCleanup(srv.cleanup)
        with open(os.path.join(srv.tmpdir, "main.lua"), "w") as f:
            f.write(RULE)
        srv.start()
        hdr = {"Content-Type": "application/json", "Authorization": "Bearer " + WEBHOOK_TOKEN}

        def send(eid, trunk):
            r = srv.post("crm", json.dumps({"id": eid, "did": DID_A, "trunk": trunk}).encode(),
                         hdr)
            self.assertEqual(r.status, 202, r)
            return r

        def job_states():
            return [s for (s,) in srv.query("SELECT state FROM jobs ORDER BY id")]

        # 1: 503 first, then done
        send("evt-1", TRUNK_VIP)
        deadline_poll(lambda: job_states() == ["done"], 15)
        self.assertEqual(job_states(), ["done"])
        self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_VIP)  # DIDWW's state changed
        # 2: an unknown trunk: DIDWW answers 422, the job is dead after one attempt
        send("evt-2", UNKNOWN_UUID)
        deadline_poll(lambda: job_states() == ["done", "dead"], 15)
        self.assertEqual(job_states(), ["done", "dead"])
        # 3: reload a rule that ignores the body's trunk, then route again
        with open(os.path.join(srv.tmpdir, "main.lua"), "w") as f:
            f.write(RULE.replace("trunk = ev.body.trunk", 'trunk = "%s"' % TRUNK_OFFICE))
        r = srv.request("POST", "/v1/rules/reload", b"", {"Authorization": "Bearer " + ADMIN})
        self.assertEqual(r.status, 200, r)
        send("evt-3", UNKNOWN_UUID)
        deadline_poll(lambda: job_states() == ["done", "dead", "done"], 15)
        self.assertEqual(job_states(), ["done", "dead", "done"])
        self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_OFFICE)

        story = [(x["kind"], x.get("event_id")) for x in srv.audit("--did", DID_A)[0]]
        self.assertEqual(story, [
            ("rule.decided", "evt-1"), ("job.queued", "evt-1"),
            ("job.attempt", "evt-1"), ("job.retry_scheduled", "evt-1"),
            ("job.attempt", "evt-1"), ("job.done", "evt-1"),
            ("rule.decided", "evt-2"), ("job.queued", "evt-2"),
            ("job.attempt", "evt-2"), ("job.dead", "evt-2"),
            ("rule.decided", "evt-3"), ("job.queued", "evt-3"),
            ("job.attempt", "evt-3"), ("job.done", "evt-3")])
        recs = srv.audit("--did", DID_A)[0]
        self.assertEqual([x["http"]["status"] for x in recs if x["kind"] == "job.attempt"],
                         [503, 200, 422, 200])
        self.assertEqual([x["http"]["attempt"] for x in recs if x["kind"] == "job.attempt"],
                         [1, 2, 1, 1])
        dead = [x for x in recs if x["kind"] == "job.dead"][0]
        self.assertEqual(dead["detail"]["errors"][0]["status"], "422")
        reloads = srv.audit("--kind", "rules.reloaded")[0]
        self.assertEqual(len(reloads), 1)
        decided = [x for x in recs if x["kind"] == "rule.decided"]
        self.assertNotEqual(decided[0]["detail"]["rule_version"],
                            decided[2]["detail"]["rule_version"])
        self.assertEqual(decided[2]["detail"]["rule_version"],
                         reloads[0]["detail"]["rule_version"])
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)

        # no secret anywhere a person or a log shipper can see
        metrics = srv.get("/metrics").body.decode()
        self.assertEqual(srv.stop(), 0)
        with open(os.path.join(srv.tmpdir, "audit.jsonl")) as f:
            mirror = f.read()
        self.assertGreater(len(mirror.splitlines()), 14)
        audit_json = json.dumps(srv.audit()[0])
        audit_table = srv.cli("audit", "-c", srv.config_path).stdout
        answers = "".join(b.decode("utf-8", "replace") for b in srv.responses)
        with open(sim.log_path) as f:
            sim_log = f.read()
        for secret in (API_KEY, WEBHOOK_TOKEN, ADMIN):
            for name, text in (("audit json", audit_json), ("audit table", audit_table),
                               ("mirror", mirror), ("log", srv.log_text()),
                               ("metrics", metrics), ("answers", answers),
                               ("sim request log", sim_log)):
                self.assertNotIn(secret, text, "%s leaks into %s" % (secret[:8], name))


if __name__ == "__main__":
    unittest.main()

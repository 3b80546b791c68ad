"""End to end with the real binary and didww-sim: signed webhooks, a rule, PATCHes to the
simulator, a retry after a 503, a job that DIDWW refuses (dead), a rule reload through the
admin API. Then the audit tells that DID's whole story in order, the chain verifies, and
no secret (API key, webhook token, admin token; on PostgreSQL runs the store's password)
appears in the audit output, the JSONL mirror, the logs, the metrics or any HTTP answer.
"""
import json
import os
import unittest

from hookline_harness import HooklineServer, store_secrets
from sim_harness import (DID_A, DID_A_NUMBER, DID_B, DID_B_NUMBER, TRUNK_OFFICE, TRUNK_VIP,
                         UNKNOWN_UUID, deadline_poll, start_sim)

API_KEY = "e2e-didww-api-key-7f3a9c"
WEBHOOK_TOKEN = "e2e-webhook-token-5b8e21"
ADMIN = "e2e-admin-token-0c4d7e9a1b"
RULE = """function on_event(ev)
  didww.route_did{did = ev.body.did, trunk = ev.body.trunk}
end
"""


STORY_RULE = """function on_event(ev)
  for _, t in ipairs(ev.body.targets) do
    didww.route_did{did = t.did, number = t.number, trunk = t.trunk}
  end
end
"""


def story_key(rec):
    return (rec["seq"], rec["kind"], rec.get("event_id"), rec.get("job_id"))


class StoryTest(unittest.TestCase):
    def test_whole_story_by_did_and_by_number(self):
        """docs/contract.md section 6: `--did` and `--number` (as a person types it) both return every
        record about the DID however rules named it: a job named by number that went dead
        before the number was resolved, its admin retry, a job naming the DID by id (whose
        number only the read before the PATCH recorded), an event that also planned a job
        for another DID (its event.received and rule.decided, not the other DID's job)."""
        sim = start_sim(self, "--burst-5xx", "1", key=API_KEY)  # the first request gets 503
        cfg = {
            "didww": {"base_url": sim.base_url, "api_key": "env:DIDWW_API_KEY",
                      "api_version": "2022-05-10", "timeout_ms": 2000},
            "delivery": {"workers": 2, "max_attempts": 1, "backoff_initial_ms": 50,
                         "backoff_max_ms": 200, "skip_noop": True},
            "rules": {"script": "main.lua"},
            "sources": {"crm": {"verify": {"scheme": "token", "header": "Authorization",
                                           "prefix": "Bearer ", "secret": "env:CRM_TOKEN"},
                                "event_id": "json:/id"}},
            "admin": {"token": "env:HOOKLINE_ADMIN_TOKEN"},
        }
        srv = HooklineServer(cfg, env={"DIDWW_API_KEY": API_KEY, "CRM_TOKEN": WEBHOOK_TOKEN,
                                       "HOOKLINE_ADMIN_TOKEN": ADMIN})
        self.addCleanup(srv.cleanup)
        with open(os.path.join(srv.tmpdir, "main.lua"), "w") as f:
            f.write(STORY_RULE)
        srv.start()
        hdr = {"Content-Type": "application/json", "Authorization": "Bearer " + WEBHOOK_TOKEN}
        admin = {"Authorization": "Bearer " + ADMIN}

        def send(eid, *targets):
            r = srv.post("crm", json.dumps({"id": eid, "targets": list(targets)}).encode(), hdr)
            self.assertEqual(r.status, 202, r)

        def states():
            return [s for (s,) in srv.query("SELECT state FROM jobs ORDER BY id")]

        def wait_states(want):
            deadline_poll(lambda: states() == want, 15)
            self.assertEqual(states(), want)

        # evt-1: DID_A named by number as a CRM writes it; the lookup gets DIDWW's 503
        # and with max_attempts 1 the job is dead before the number was ever resolved
        send("evt-1", {"number": "+43 (7) 1234-567", "trunk": TRUNK_VIP})
        wait_states(["dead"])
        # an operator retries it: now it resolves, reads the DID and PATCHes it
        r = srv.request("POST", "/v1/jobs/1/retry", b"", admin)
        self.assertEqual(r.status, 200, r)
        wait_states(["done"])
        # evt-2: DID_A named by id (the read before the PATCH records its number)
        send("evt-2", {"did": DID_A, "trunk": TRUNK_OFFICE})
        wait_states(["done", "done"])
        # evt-3: one event for DID_A (by id) and DID_B; evt-4: DID_B alone
        send("evt-3", {"did": DID_A, "trunk": TRUNK_VIP}, {"did": DID_B, "trunk": TRUNK_VIP})
        wait_states(["done"] * 4)
        send("evt-4", {"number": DID_B_NUMBER, "trunk": TRUNK_OFFICE})
        wait_states(["done"] * 5)
        self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_VIP)

        everything = srv.audit()[0]
        job_of = {j: did for (j, did) in srv.query("SELECT id, did FROM jobs")}
        self.assertEqual(job_of, {1: DID_A, 2: DID_A, 3: DID_A, 4: DID_B, 5: DID_B})

        def about(did):
            """What the story must hold, from the whole trail: every record of the DID's
            jobs (found by job id, whatever the record names) and every record of those
            jobs' events that belongs to no job."""
            jobs = {j for j, d in job_of.items() if d == did}
            events = {x["event_id"] for x in everything
                      if x.get("job_id") in jobs and "event_id" in x}
            return [story_key(x) for x in everything
                    if x.get("job_id") in jobs
                    or (x.get("event_id") in events and x.get("job_id") is None)]

        want_a = about(DID_A)
        kinds_a = [k for (_, k, _, _) in want_a]
        # the records that once went missing are all part of it
        for kind in ("event.received", "rule.decided", "job.queued", "job.dead",
                     "admin.job_retry", "job.attempt", "job.done"):
            self.assertIn(kind, kinds_a)
        early = [x for x in everything if x["kind"] in ("job.queued", "job.dead")
                 and x.get("job_id") == 1]
        self.assertTrue(early and all("did" not in x for x in early), early)
        by_id = [x for x in everything if x.get("job_id") == 2 and x["kind"] == "job.attempt"]
        self.assertTrue(by_id and all("number" not in x for x in by_id), by_id)
        self.assertIn(DID_A_NUMBER, json.dumps([x["detail"] for x in by_id]))

        for args in (("--did", DID_A), ("--did", DID_A.upper()), ("--number", DID_A_NUMBER),
                     ("--number", "+43 (7) 1234-567"), ("--number", "+43 71 234 567")):
            with self.subTest(args=args):
                self.assertEqual([story_key(x) for x in srv.audit(*args)[0]], want_a)
        want_b = about(DID_B)
        self.assertEqual([story_key(x) for x in srv.audit("--did", DID_B)[0]], want_b)
        self.assertEqual([story_key(x) for x in srv.audit("--number", DID_B_NUMBER)[0]],
                         want_b)
        # evt-3 is in both stories, each with its event's records and its own job only
        self.assertEqual({k[3] for k in want_a if k[2] == "evt-3"}, {None, 3})
        self.assertEqual({k[3] for k in want_b if k[2] == "evt-3"}, {None, 4})
        self.assertEqual([k[1] for k in want_a if k[2] == "evt-3"][:2],
                         ["event.received", "rule.decided"])
        # the admin API answers the same
        for q in ("did=" + DID_A, "number=%2B43%20(7)%201234-567"):
            r = srv.request("GET", "/v1/audit?limit=1000&" + q, None, admin)
            self.assertEqual(r.status, 200, r)
            self.assertEqual([story_key(x) for x in r.json()["records"]], want_a)
        # a number in 00 or national form is refused, saying so
        # (a usage error, exit 2, one line naming the option)
        r = srv.cli("audit", "-c", srv.config_path, "--number", "0043 7 1234 567")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("00 form", r.stderr)
        self.assertTrue(r.stderr.startswith("hookline audit: --number "), r.stderr)
        r = srv.cli("audit", "-c", srv.config_path, "--number", "07 1234 567")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("national form", r.stderr)

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
            ("event.received", "evt-1"), ("rule.decided", "evt-1"), ("job.queued", "evt-1"),
            ("job.attempt", "evt-1"), ("job.retry_scheduled", "evt-1"),
            ("job.attempt", "evt-1"), ("job.done", "evt-1"),
            ("event.received", "evt-2"), ("rule.decided", "evt-2"), ("job.queued", "evt-2"),
            ("job.attempt", "evt-2"), ("job.dead", "evt-2"),
            ("event.received", "evt-3"), ("rule.decided", "evt-3"), ("job.queued", "evt-3"),
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
        for secret in store_secrets():  # PostgreSQL runs: the store's password (never shown)
            for name, text in (("audit json", audit_json), ("audit table", audit_table),
                               ("mirror", mirror), ("log", srv.log_text()),
                               ("metrics", metrics), ("answers", answers)):
                self.assertFalse(secret in text, "the store password leaks into %s" % name)


if __name__ == "__main__":
    unittest.main()

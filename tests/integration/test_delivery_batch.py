"""Batched DID reads (issue 17) against didww-sim, on SQLite and PostgreSQL.

When a worker claims several jobs at once (here: one webhook whose actions become several
jobs, committed together), hookline reads their DIDs in one list request
(GET /v3/dids?filter[id]=a,b,c or filter[number]=...&include=voice_in_trunk,
voice_in_trunk_group&page[size]=N&page[number]=P) instead of one GET each, and the
answer serves as the no-op read and the audit's detail.before. What is checked, from the
simulator's request log and the audit trail:

- a list larger than page[size] (delivery.batch_page_size 3) is read page by page, and the
  DIDs of every page are served: no single GET, no PATCH for a DID already in place
  (job.noop with its state), detail.before / detail.after on each PATCH;
- a DID missing from the answer is read singly (the 404 kills its job as before);
- a number that resolves to nothing kills its job with no request of its own; the others
  resolve from the same answer, which is also their before-state;
- a 429 on the batch read: the jobs wait for Retry-After without using an attempt, then
  the list is read again and every job is done;
- successive jobs of one DID (different fields, none superseded) each get a before-state
  read after the previous job's PATCH, and go out in order;
- one DID named by number, then by id, in the same round: the number's job goes first.

Run: HOOKLINE_BIN=$PWD/build/hookline python3 tests/integration/test_delivery_batch.py -v
"""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sim_harness import (  # noqa: E402
    DID_A,
    DID_A_NUMBER,
    DID_B,
    TRUNK_OFFICE,
    TRUNK_SUP_A,
    TRUNK_VIP,
    UNKNOWN_UUID,
    deadline_poll,
    delivery_config,
    delivery_server,
    make_state,
    parse_metrics,
    start_sim,
)

KEY = "didww-test-key-7c1f0e9a42"
ADMIN_TOKEN = "admin-test-token-5b8e2d4a9c"
JSON_CT = {"Content-Type": "application/json"}
FINAL_STATES = ("done", "dead", "superseded", "cancelled")
INCLUDE = "include=voice_in_trunk,voice_in_trunk_group"

RULE = r"""
function on_event(ev)
  for _, a in ipairs(ev.body.actions) do
    local t = {did = a.did, number = a.number}
    if a.op == "route" then
      t.trunk = a.trunk
      didww.route_did(t)
    else
      for k, v in pairs(a.fields) do t[k] = v end
      didww.update_did(t)
    end
  end
end
"""


def route(did=None, number=None, trunk=None):
    a = {"op": "route", "trunk": trunk}
    if did:
        a["did"] = did
    if number:
        a["number"] = number
    return a


def update(did, **fields):
    return {"op": "update", "did": did, "fields": fields}


class BatchTestCase(unittest.TestCase):
    maxDiff = 4000

    def hookline(self, sim, **delivery):
        cfg = delivery_config(sim, extra={"delivery": delivery} if delivery else None)
        return delivery_server(self, cfg, RULE, KEY, ADMIN_TOKEN)

    def post(self, srv, event_id, *actions):
        r = srv.post("crm", json.dumps({"id": event_id, "actions": list(actions)}).encode(),
                     JSON_CT)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["jobs"], len(actions), r.json())

    def jobs(self, srv):
        rows = srv.query("SELECT id, state, attempts, did, number FROM jobs ORDER BY id")
        return [dict(zip(("id", "state", "attempts", "did", "number"), r)) for r in rows]

    def wait_final(self, srv, count, timeout=20):
        def check():
            js = self.jobs(srv)
            return js if len(js) == count and all(j["state"] in FINAL_STATES for j in js) \
                else None
        js = deadline_poll(check, timeout, 0.1)
        if not js:
            self.fail("jobs not final in %d s: %r\n%s" % (timeout, self.jobs(srv),
                                                          "\n".join(srv.stderr_lines[-15:])))
        return js

    def audit(self, srv, kind):
        records, _ = srv.audit()
        return [r for r in records if r["kind"] == kind]

    @staticmethod
    def gets(sim):
        return [e for e in sim.requests() if e["method"] == "GET"]

    @staticmethod
    def patched(sim):
        out = []
        for e in sim.requests():
            m = re.match(r"/v3/dids/([0-9a-f-]{36})$", e["path"])
            if e["method"] == "PATCH" and m:
                out.append(m.group(1))
        return out

    @staticmethod
    def list_values(path, name):
        m = re.search(r"filter\[%s\]=([^&]*)" % name, path)
        return sorted(m.group(1).split(",")) if m else None


class TestBatchedReads(BatchTestCase):

    def test_pages_noop_and_before_after(self):
        """7 DIDs by id in one round, page[size] 3: three list requests (pages 1..3, the
        same filter), no single read; the 2 already on their trunk are no-ops (no PATCH),
        the 5 others are PATCHed with detail.before from the list and detail.after."""
        state, extra = make_state(7)  # on TRUNK_OFFICE
        sim = start_sim(self, "--latency-ms", "5", state=state, key=KEY)
        srv = self.hookline(sim, batch_page_size=3)
        ids = [d for d, _ in extra]
        in_place, moved = ids[:2], ids[2:]
        self.post(srv, "e1", *([route(did=d, trunk=TRUNK_OFFICE) for d in in_place] +
                               [route(did=d, trunk=TRUNK_VIP) for d in moved]))
        js = self.wait_final(srv, 7)
        self.assertEqual([j["state"] for j in js], ["done"] * 7)

        gets = self.gets(sim)
        self.assertEqual(len(gets), 3, [g["path"] for g in gets])
        for page, g in enumerate(gets, 1):
            self.assertTrue(g["path"].startswith("/v3/dids?filter[id]="), g["path"])
            self.assertEqual(self.list_values(g["path"], "id"), sorted(ids), g["path"])
            self.assertIn(INCLUDE, g["path"])
            self.assertIn("page[size]=3", g["path"])
            self.assertIn("page[number]=%d" % page, g["path"])
            self.assertEqual(g["status"], 200)
        self.assertEqual(sorted(self.patched(sim)), sorted(moved))
        for d in moved:
            self.assertEqual(sim.did(d)["trunk"], TRUNK_VIP)

        noops = self.audit(srv, "job.noop")
        self.assertEqual(sorted(r["did"] for r in noops), sorted(in_place))
        for r in noops:
            self.assertEqual(r["detail"]["state"]["trunk"], TRUNK_OFFICE, r)
        attempts = self.audit(srv, "job.attempt")
        self.assertEqual(sorted(r["did"] for r in attempts), sorted(moved))
        for r in attempts:
            self.assertEqual(r["detail"]["before"]["id"], r["did"], r)
            self.assertEqual(r["detail"]["before"]["trunk"], TRUNK_OFFICE, r)
            self.assertEqual(
                r["detail"]["after"]["relationships"]["voice_in_trunk"]["data"]["id"],
                TRUNK_VIP, r)
        # Requests per job: 3 list pages + 5 PATCHes for 7 jobs (single reads: 12).
        self.assertEqual(len(sim.requests()), 8)
        # The budget gauges over the last minute: 8 requests / 7 jobs, 7 jobs / 60 s.
        m = parse_metrics(srv.get("/metrics").body.decode())
        self.assertAlmostEqual(m[("hookline_delivery_requests_per_job", frozenset())], 8 / 7,
                               places=2)
        self.assertAlmostEqual(m[("hookline_delivery_jobs_per_second", frozenset())], 7 / 60,
                               places=2)

    def test_did_missing_from_the_answer_is_read_singly(self):
        """A DID the list answer lacks is read on its own (404: the job is dead, as a
        single read decided before); the others go out without a read of their own."""
        state, extra = make_state(2)
        sim = start_sim(self, state=state, key=KEY)
        srv = self.hookline(sim)
        ids = [d for d, _ in extra]
        self.post(srv, "e1", *[route(did=d, trunk=TRUNK_VIP) for d in ids + [UNKNOWN_UUID]])
        js = self.wait_final(srv, 3)
        by_did = {j["did"]: j["state"] for j in js}
        self.assertEqual(by_did, {ids[0]: "done", ids[1]: "done", UNKNOWN_UUID: "dead"})
        gets = [g["path"] for g in self.gets(sim)]
        self.assertEqual(len(gets), 2, gets)
        self.assertEqual(self.list_values(gets[0], "id"), sorted(ids + [UNKNOWN_UUID]))
        self.assertEqual(gets[1], "/v3/dids/%s?%s" % (UNKNOWN_UUID, INCLUDE))
        self.assertEqual(sorted(self.patched(sim)), sorted(ids))

    def test_number_that_resolves_to_nothing(self):
        """Three numbers in one round: one list request by number (with include); the
        number no DID has is dead with no request of its own, the two others are PATCHed
        with the list's state as detail.before (no further read)."""
        state, extra = make_state(2, first_number=3620000000)
        sim = start_sim(self, state=state, key=KEY)
        srv = self.hookline(sim)
        nums = [n for _, n in extra]
        self.post(srv, "e1", route(number=nums[0], trunk=TRUNK_VIP),
                  route(number="3629999999", trunk=TRUNK_VIP),
                  route(number=nums[1], trunk=TRUNK_VIP))
        js = self.wait_final(srv, 3)
        by_number = {j["number"]: j["state"] for j in js}
        self.assertEqual(by_number, {nums[0]: "done", "3629999999": "dead", nums[1]: "done"})
        gets = [g["path"] for g in self.gets(sim)]
        self.assertEqual(len(gets), 1, gets)
        self.assertEqual(self.list_values(gets[0], "number"),
                         sorted(nums + ["3629999999"]))
        self.assertIn(INCLUDE, gets[0])
        self.assertEqual(sorted(self.patched(sim)), sorted(d for d, _ in extra))
        dead = [r for r in self.audit(srv, "job.dead") if r.get("number") == "3629999999"]
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["detail"]["reason"], "no DID with this number in the account")
        for r in self.audit(srv, "job.attempt"):
            self.assertEqual(r["detail"]["before"]["trunk"], TRUNK_OFFICE, r)
            self.assertEqual(r["detail"]["before"]["number"], r["number"], r)

    def test_429_on_the_batch_read(self):
        """The list request answered 429 (Retry-After: 1): no job uses an attempt or is
        sent before the wait; the list is read again after >= 1 s, then all are done."""
        state, extra = make_state(3)
        sim = start_sim(self, "--burst-5xx", "1", "--burst-status", "429", state=state,
                        key=KEY)
        srv = self.hookline(sim)
        ids = [d for d, _ in extra]
        self.post(srv, "e1", *[route(did=d, trunk=TRUNK_VIP) for d in ids])
        js = self.wait_final(srv, 3)
        self.assertEqual([(j["state"], j["attempts"]) for j in js], [("done", 1)] * 3)
        log = sim.requests()
        self.assertEqual([(e["method"], e["status"]) for e in log[:2]],
                         [("GET", 429), ("GET", 200)], [(e["method"], e["path"]) for e in log])
        self.assertEqual(self.list_values(log[0]["path"], "id"), sorted(ids))
        self.assertEqual(log[1]["path"], log[0]["path"])
        self.assertGreaterEqual(log[1]["t"] - log[0]["t"], 900)
        self.assertEqual(sorted(self.patched(sim)), sorted(ids))
        self.assertEqual(len(log), 5)
        for d in ids:
            self.assertEqual(sim.did(d)["trunk"], TRUNK_VIP)

    def test_successive_jobs_of_one_did_read_after_each_patch(self):
        """Three jobs each for DID_A and DID_B (different fields, none superseded): one
        job per DID per round, each round's list read after the previous PATCH, so every
        detail.before shows the previous job's change, and the PATCHes go out in order."""
        sim = start_sim(self, key=KEY)
        srv = self.hookline(sim)
        self.post(srv, "e1",
                  update(DID_A, description="a1"), route(did=DID_A, trunk=TRUNK_SUP_A),
                  update(DID_A, capacity_limit=7),
                  update(DID_B, description="b1"), route(did=DID_B, trunk=TRUNK_SUP_A),
                  update(DID_B, capacity_limit=9))
        js = self.wait_final(srv, 6)
        self.assertEqual([j["state"] for j in js], ["done"] * 6)
        for did, desc, cap in ((DID_A, "a1", 7), (DID_B, "b1", 9)):
            final = sim.did(did)
            self.assertEqual((final["description"], final["trunk"], final["capacity_limit"]),
                             (desc, TRUNK_SUP_A, cap))
            atts = sorted((r for r in self.audit(srv, "job.attempt") if r["did"] == did),
                          key=lambda r: r["job_id"])
            self.assertEqual(len(atts), 3)
            self.assertEqual(atts[1]["detail"]["before"]["description"], desc)
            self.assertEqual(atts[2]["detail"]["before"]["trunk"], TRUNK_SUP_A)
            bodies = [e["body"]["data"] for e in sim.requests()
                      if e["method"] == "PATCH" and e["path"].endswith(did)]
            self.assertEqual([sorted(b.get("attributes", {})) for b in bodies],
                             [["description"], [], ["capacity_limit"]])
        # Each PATCH had its own read (a list when both DIDs were claimed together, else a
        # single GET): a state is served once, never to the next job of the same DID.
        self.assertEqual(len(self.gets(sim)), sum(1 for g in self.gets(sim)
                                                  if g["status"] == 200))
        self.assertGreaterEqual(len(self.gets(sim)), 3)

    def test_same_did_by_number_then_by_id_in_one_round(self):
        """Both jobs are claimed in one round, and the number resolves from the round's
        list read without a request of its own; the job by id still waits for it, so the
        PATCHes go out in event order and the DID ends as the second event set it."""
        for attempt in range(3):  # the order must hold every time, not by luck
            with self.subTest(attempt=attempt):
                sim = start_sim(self, "--latency-ms", "40", key=KEY)
                srv = self.hookline(sim)
                self.post(srv, "mix-%d" % attempt, route(number=DID_A_NUMBER, trunk=TRUNK_OFFICE),
                          route(did=DID_A, trunk=TRUNK_SUP_A),
                          route(did=DID_B, trunk=TRUNK_VIP))
                js = self.wait_final(srv, 3)
                self.assertEqual([j["state"] for j in js], ["done"] * 3)
                got = [e["body"]["data"]["relationships"]["voice_in_trunk"]["data"]["id"]
                       for e in sim.requests()
                       if e["method"] == "PATCH" and e["path"] == "/v3/dids/" + DID_A]
                self.assertEqual(got, [TRUNK_OFFICE, TRUNK_SUP_A])
                self.assertEqual(sim.did(DID_A)["trunk"], TRUNK_SUP_A)
                srv.stop()


if __name__ == "__main__":
    unittest.main()

"""Several `hookline serve` instances on one PostgreSQL database behave as one service
(docs/contract.md section 8). PostgreSQL only: CMakeLists.txt registers this suite as
integration_pg.test_multi alone.

Three instances (instance.id hl-a, hl-b, hl-c) share one database of the test's own and
one simulator that enforces the same rate limit hookline is configured with. A backlog
is spread over them: every event is posted to one instance and again to another
(duplicates), and per-DID sequences are interleaved across the three. hl-c is killed
with SIGKILL mid-backlog and started again. Then:
- every acknowledged event is stored once, and every job ended once (one terminal audit
  record each, matching the jobs table);
- every DID holds its last event's value, and the simulator saw each DID's changes in
  event order;
- at most rate_limit_per_s requests reached the simulator in any 1-second window, none
  answered 429, and the instances together used most of the budget;
- `hookline audit verify` passes over the records of all three, which carry their
  instance ids;
- a 401 seen by one instance pauses all three; a resume on another (and `hookline jobs
  resume`, the CLI) resumes all three;
- a rule reload requested on one instance (POST /v1/rules/reload, then SIGHUP on
  another) reloads all three (their rule_version in /readyz and /metrics);
- the audit mirror is written by exactly one instance (the leader); killed, another
  takes over.
"""

import json
import os
import signal
import time
import unittest

import hookline_harness
from hookline_harness import STORE_BACKEND, pg_create_database, pg_drop_database
from sim_harness import (
    DeliveryHooklineServer,
    deadline_poll,
    delivery_config,
    make_state,
    metric,
    parse_metrics,
    start_sim,
)

KEY = "didww-multi-key-4e2a91c7d0"
NEW_KEY = "didww-multi-key2-8b0f6a3e15"
ADMIN_TOKEN = "admin-multi-token-9d3c7e1f20"
JSON_CT = {"Content-Type": "application/json"}
FINAL_STATES = ("done", "dead", "superseded", "cancelled")
RATE = 10
IDS = ("hl-a", "hl-b", "hl-c")

RULE = r"""
-- version %s
function on_event(ev)
  for _, a in ipairs(ev.body.actions) do
    local t = {did = a.did}
    for k, v in pairs(a.fields) do t[k] = v end
    didww.update_did(t)
  end
end
"""


@unittest.skipIf(STORE_BACKEND != "pg", "several instances need PostgreSQL")
class TestThreeInstances(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.dbname = pg_create_database()
        self.addCleanup(pg_drop_database, self.dbname)
        state, self.extra = make_state(24)
        self.sim = start_sim(self, "--rate-limit", str(RATE), "--latency-ms", "15",
                             state=state, key=KEY)
        self.servers = [self.instance(i) for i in IDS]

    def instance(self, ident):
        cfg = delivery_config(self.sim, skip_noop=False, workers=3, rate_limit_per_s=RATE,
                              max_attempts=10)
        cfg["store"] = {"url": hookline_harness._pg_url(self.dbname),
                        "password": "file:" + hookline_harness.PG_PASSFILE}
        cfg["instance"] = {"id": ident}
        cfg["audit"] = {"jsonl_path": "audit.jsonl"}  # in the instance's own directory
        srv = DeliveryHooklineServer(cfg, env={"DIDWW_API_KEY": KEY,
                                               "HOOKLINE_ADMIN_TOKEN": ADMIN_TOKEN})
        self.addCleanup(srv.cleanup)
        self.write_rule(srv, "1")
        srv.start()
        return srv

    @staticmethod
    def write_rule(srv, version):
        with open(os.path.join(srv.tmpdir, "main.lua"), "w", encoding="utf-8") as f:
            f.write(RULE % version)

    def post(self, srv, event_id, actions):
        body = json.dumps({"id": event_id, "actions": actions}).encode()
        return srv.post("crm", body, JSON_CT)

    def admin(self, srv, method, path):
        return srv.request(method, path, b"" if method == "POST" else None,
                           {"Authorization": "Bearer " + ADMIN_TOKEN})

    def jobs(self):
        rows = self.servers[0].query("SELECT id, event_id, state, did FROM jobs ORDER BY id")
        return {r[0]: {"id": r[0], "event_id": r[1], "state": r[2], "did": r[3]} for r in rows}

    def wait_final(self, count, timeout):
        def check():
            js = self.jobs()
            if len(js) == count and all(j["state"] in FINAL_STATES for j in js.values()):
                return js
            return None
        js = deadline_poll(check, timeout, 0.2)
        if not js:
            states = {}
            for j in self.jobs().values():
                states[j["state"]] = states.get(j["state"], 0) + 1
            self.fail("jobs not final in %.0f s: %r\n%s" % (
                timeout, states, "\n".join(l for s in self.servers for l in s.stderr_lines[-8:])))
        return js

    def readyz_all(self, predicate, timeout=10.0):
        """Polls /readyz of every instance until predicate(result) holds for all."""
        def check():
            rs = [s.get("/readyz") for s in self.servers]
            return rs if all(predicate(r) for r in rs) else None
        rs = deadline_poll(check, timeout, 0.1)
        self.assertTrue(rs, [(s.config["instance"]["id"], s.get("/readyz"))
                             for s in self.servers])
        return rs

    def test_backlog_kill_pause_reload(self):
        a, b, c = self.servers
        # Every instance appears in the instances table, visible in /readyz.
        rs = self.readyz_all(lambda r: r.status == 200 and len(r.json().get("instances", []))
                             == 3)
        self.assertEqual([r.json()["instance"] for r in rs], list(IDS))
        self.assertEqual(sorted(i["id"] for i in rs[0].json()["instances"]), list(IDS))

        # ---- the backlog: 6 DIDs x 6 ordered updates, 24 DIDs with one update each ----
        seq_dids = [d for d, _ in self.extra[:6]]
        one_dids = [d for d, _ in self.extra[6:]]
        events = []  # (event id, did, value), in the order each DID's events were sent
        for i in range(6):
            for k, did in enumerate(seq_dids):
                events.append(("seq-%d-%d" % (k, i), did, "s%d-%02d" % (k, i)))
        for k, did in enumerate(one_dids):
            events.append(("one-%d" % k, did, "o%d" % k))
        acked = set()
        for n, (eid, did, value) in enumerate(events):
            first = self.servers[n % 3]
            again = self.servers[(n + 1) % 3]
            r = self.post(first, eid, [{"did": did, "fields": {"description": value}}])
            self.assertEqual(r.status, 202, r)
            acked.add(eid)
            r = self.post(again, eid, [{"did": did, "fields": {"description": value}}])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "duplicate", r)

        # ---- SIGKILL hl-c mid-backlog while it holds a job, then start it again ----
        self.assertTrue(deadline_poll(lambda: len(self.sim.requests()) >= 5, 15, 0.02))
        self.assertTrue(deadline_poll(lambda: a.query(
            "SELECT count(*) FROM jobs WHERE state = 'running' AND leased_by = 'hl-c'")[0][0],
            15, 0.005), "hl-c never held a job")
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait(10)
        self.assertTrue(any(j["state"] in ("pending", "running") for j in self.jobs().values()),
                        "the backlog ended before the kill")
        c.start()

        js = self.wait_final(len(events), 60)

        # Every acknowledged event stored once.
        rows = a.query("SELECT event_id, count(*) FROM events WHERE source = 'crm' "
                       "GROUP BY event_id")
        self.assertEqual({r[0] for r in rows}, acked)
        self.assertEqual({r[1] for r in rows}, {1})

        # Each job ended once: one terminal audit record, matching its state.
        records, _ = a.audit()
        terminal = {"job.done": "done", "job.dead": "dead", "job.superseded": "superseded",
                    "job.cancelled": "cancelled", "job.noop": "done"}
        seen = {}
        for r in records:
            if r["kind"] in terminal and r.get("job_id") is not None:
                seen.setdefault(r["job_id"], []).append(terminal[r["kind"]])
        for jid, j in js.items():
            self.assertEqual(seen.get(jid), [j["state"]], "job %d" % jid)
        self.assertNotIn("dead", {j["state"] for j in js.values()})

        # Every DID in its last event's state; the simulator saw each DID's changes in
        # event order (a request repeated after the kill may appear twice in a row).
        log = sorted(self.sim.requests(), key=lambda e: e["t"])
        last = {}
        order = {}
        for eid, did, value in events:
            last[did] = value
            order.setdefault(did, []).append(value)
        state = {d["id"]: d for d in self.sim.state()["dids"]}
        for did, value in last.items():
            self.assertEqual(state[did]["description"], value, did)
            sent = [e["body"]["data"]["attributes"]["description"] for e in log
                    if e["method"] == "PATCH" and e["path"].endswith(did)]
            positions = [order[did].index(v) for v in sent]
            self.assertEqual(positions, sorted(positions), (did, sent))
            self.assertEqual(sent[-1], value)

        # One rate budget: at most RATE requests in any 1-second window, no 429, and the
        # instances together used most of it while the backlog lasted.
        ts = [e["t"] for e in log]
        for i in range(len(ts) - RATE):
            self.assertGreaterEqual(ts[i + RATE] - ts[i], 1000.0,
                                    "%d requests within %.1f ms" % (RATE + 1,
                                                                    ts[i + RATE] - ts[i]))
        stats = self.sim.stats()
        self.assertEqual(stats["rate_limited"], 0, stats)
        self.assertNotIn("429", stats["responses_by_status"])
        self.assertLessEqual(stats["max_requests_per_second"], RATE, stats)
        # (The kill costs up to a second of one instance's slot; three instances still
        # keep the budget busy: a 1-second window somewhere holds RATE - 1 requests.)
        busiest = max(sum(1 for u in ts if t <= u < t + 1000.0) for t in ts)
        self.assertGreaterEqual(busiest, RATE - 1, "the budget was never used")

        # The instances shared the work and their records carry their ids.
        by = {r["detail"].get("instance") for r in records if r["kind"] == "job.attempt"}
        self.assertLessEqual(by, set(IDS))
        self.assertGreaterEqual(len(by), 2, by)
        got = {r["detail"].get("instance") for r in records if r["kind"] == "event.received"}
        self.assertEqual(got & set(IDS), set(IDS), got)
        for s in self.servers:
            lines = [json.loads(l) for l in s.stderr_lines if l.startswith("{")]
            self.assertTrue(lines)
            self.assertEqual([l for l in lines if "instance" not in l], [])
            listening = [l for l in lines if l["msg"] == "listening"]
            self.assertEqual({l["instance"] for l in listening}, {s.config["instance"]["id"]})

        # audit verify passes over the records of all three.
        r = a.cli("audit", "verify", "-c", a.config_path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        # ---- a 401 on one instance pauses all three; a resume on another resumes all ----
        self.sim.restart(key=NEW_KEY)
        n_before = len(self.sim.requests())
        did = one_dids[0]
        r = self.post(b, "pause-1", [{"did": did, "fields": {"description": "after-resume"}}])
        self.assertEqual(r.status, 202, r)
        self.readyz_all(lambda r: r.status == 503 and "paused" in r.body.decode())
        refused = self.sim.requests()[n_before:]
        self.assertEqual(len(refused), 1, refused)  # one instance saw the 401, the others
        self.assertEqual(refused[0]["status"], 401)  # paused without sending
        paused = [r for r in a.audit()[0] if r["kind"] == "delivery.paused"]
        self.assertEqual(len(paused), 1, paused)
        for s in self.servers:
            m = parse_metrics(s.get("/metrics").body.decode())
            self.assertEqual(metric(m, "hookline_delivery_paused"), 1.0)
        self.sim.restart(key=KEY)
        # every instance uses KEY, which the simulator now takes again
        who = next(s for s in self.servers
                   if s.config["instance"]["id"] != paused[0]["detail"]["instance"])
        r = self.admin(who, "POST", "/v1/delivery/resume")
        self.assertEqual(r.status, 200, r)
        self.readyz_all(lambda r: r.status == 200)
        self.assertTrue(deadline_poll(
            lambda: self.sim.did(did)["description"] == "after-resume", 15, 0.1))

        # ---- ... and `hookline jobs resume` (the CLI, no instance asked) resumes all ----
        self.sim.restart(key=NEW_KEY)
        r = self.post(c, "pause-2", [{"did": did, "fields": {"description": "after-cli-resume"}}])
        self.assertEqual(r.status, 202, r)
        self.readyz_all(lambda r: r.status == 503 and "paused" in r.body.decode())
        self.sim.restart(key=KEY)
        r = a.cli("jobs", "-c", a.config_path, "resume")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.readyz_all(lambda r: r.status == 200)
        self.assertTrue(deadline_poll(
            lambda: self.sim.did(did)["description"] == "after-cli-resume", 15, 0.1))

        # ---- a rule reload on one instance reloads all three ----
        before = [r.json()["rule_version"] for r in self.readyz_all(lambda r: r.status == 200)]
        self.assertEqual(len(set(before)), 1, before)
        for s in self.servers:
            self.write_rule(s, "2")
        r = self.admin(a, "POST", "/v1/rules/reload")
        self.assertEqual(r.status, 200, r)
        new = r.json()["rule_version"]
        self.assertNotEqual(new, before[0])
        self.readyz_all(lambda r: r.status == 200 and r.json()["rule_version"] == new)
        for s in self.servers:
            text = s.get("/metrics").body.decode()
            self.assertIn('hookline_instance_info{instance="%s",rule_version="%s"} 1'
                          % (s.config["instance"]["id"], new), text)
        reloaded = [r for r in a.audit()[0] if r["kind"] == "rules.reloaded"]
        self.assertEqual(sorted(r["detail"]["instance"] for r in reloaded), list(IDS))
        self.assertEqual(sorted(r["detail"]["trigger"] for r in reloaded),
                         ["POST /v1/rules/reload", "instance hl-a", "instance hl-a"])
        # ... and SIGHUP on another does the same
        for s in self.servers:
            self.write_rule(s, "3")
        b.signal(signal.SIGHUP)
        rs = self.readyz_all(lambda r: r.status == 200 and r.json()["rule_version"] not in
                             (new, before[0]))
        self.assertEqual(len({r.json()["rule_version"] for r in rs}), 1, rs)
        reloaded = [r for r in a.audit()[0] if r["kind"] == "rules.reloaded"]
        self.assertEqual(sorted(r["detail"]["trigger"] for r in reloaded[3:]),
                         ["SIGHUP", "instance hl-b", "instance hl-b"])

        # ---- the audit mirror runs on one instance at a time ----
        def leaders(servers):
            out = []
            for s in servers:
                m = parse_metrics(s.get("/metrics").body.decode())
                if metric(m, "hookline_instance_leader",
                          instance=s.config["instance"]["id"]) == 1.0:
                    out.append(s)
            return out

        def mirror_lines(s):
            path = os.path.join(s.tmpdir, "audit.jsonl")
            if not os.path.exists(path):
                return []
            with open(path, encoding="utf-8") as f:
                return [json.loads(l) for l in f if l.strip()]

        found = deadline_poll(lambda: leaders(self.servers), 5, 0.1)
        self.assertEqual(len(found), 1, found)
        leader = found[0]
        others = [s for s in self.servers if s is not leader]
        self.assertTrue(deadline_poll(lambda: len(mirror_lines(leader)) >= len(a.audit()[0]),
                                      5, 0.1))
        self.assertEqual([mirror_lines(s) for s in others], [[], []])
        leader.kill()
        found = deadline_poll(lambda: leaders(others), 10, 0.1)
        self.assertEqual(len(found), 1, found)
        r = self.post(found[0], "after-failover", [{"did": one_dids[1],
                                                    "fields": {"description": "x"}}])
        self.assertEqual(r.status, 202, r)
        self.assertTrue(deadline_poll(lambda: any(
            l.get("event_id") == "after-failover" for l in mirror_lines(found[0])), 10, 0.1))
        self.assertEqual(mirror_lines(next(s for s in others if s is not found[0])), [])


if __name__ == "__main__":
    unittest.main()

"""The admin API (/v1/...) over real HTTP: bearer-token protection on every endpoint,
audit query with the CLI's filters and cursor pagination by seq, event lookup, job listing,
retry and cancel with their audit records, and no token in any output.

Delivery is off in these tests (no didww.api_key), so planned jobs stay pending.
"""
import json
import unittest

from hookline_harness import start_server, make_tmpdir

ADMIN = "admin-api-token-0123456789abcdef"
RULE = """function on_event(ev)
  if ev.body.skip then return skip("not for us") end
  didww.route_did{number = ev.body.phone, trunk = "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"}
end
"""
ENDPOINTS = [("GET", "/v1/audit"), ("GET", "/v1/events/x"), ("GET", "/v1/jobs"),
             ("POST", "/v1/jobs/1/retry"), ("POST", "/v1/jobs/1/cancel"),
             ("POST", "/v1/delivery/resume"), ("POST", "/v1/delivery/pause"),
             ("POST", "/v1/rules/reload")]


class AdminApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = make_tmpdir()
        with open(tmp + "/main.lua", "w") as f:
            f.write(RULE)
        cfg = {"rules": {"script": "main.lua"}, "admin": {"token": "env:HL_ADMIN"},
               "sources": {"zd": {"verify": {"scheme": "none", "insecure": True}}}}
        cls.srv = start_server(cls, cfg, env={"HL_ADMIN": ADMIN}, tmpdir=tmp)
        cls.ids = []
        for i in range(5):
            body = json.dumps({"phone": "+43712345%02d" % i, "n": i}).encode()
            r = cls.srv.post("zd", body, {"Content-Type": "application/json"})
            assert r.status == 202, r
            cls.ids.append(r.json()["event_id"])
        r = cls.srv.post("zd", b'{"skip": true}', {"Content-Type": "application/json"})
        assert r.status == 202, r

    def get(self, path, token=ADMIN):
        return self.srv.request("GET", path, None, {"Authorization": "Bearer " + token})

    def post(self, path, token=ADMIN):
        return self.srv.request("POST", path, b"", {"Authorization": "Bearer " + token})

    def test_every_endpoint_needs_the_token(self):
        for method, path in ENDPOINTS:
            for headers in ({}, {"Authorization": "Bearer wrong-token"},
                            {"Authorization": "Basic " + ADMIN}):
                r = self.srv.request(method, path, b"" if method == "POST" else None, headers)
                self.assertEqual(r.status, 401, (method, path, headers))
                self.assertEqual(r.headers["Content-Type"], "application/problem+json")
                self.assertNotIn(ADMIN, r.body.decode())

    def test_audit_filters_and_cursor(self):
        r = self.get("/v1/audit?kind=rule.decided")
        self.assertEqual(r.status, 200, r)
        recs = r.json()["records"]
        self.assertEqual(len(recs), 5)
        self.assertTrue(all(x["kind"] == "rule.decided" for x in recs))
        self.assertEqual(r.json()["next_after"], None)
        # prefix kinds and the number filter
        r = self.get("/v1/audit?kind=rule.*&number=%2B4371234503")
        kinds = [x["kind"] for x in r.json()["records"]]
        self.assertEqual(kinds, ["rule.decided"])
        # the number as a person types it finds the same; a national or 00 form is a
        # bad query naming the problem (it was a 503 "store unavailable")
        r = self.get("/v1/audit?kind=rule.*&number=%2B43%20(712)%2034-5%2003")
        self.assertEqual([x["kind"] for x in r.json()["records"]], ["rule.decided"])
        for bad, word in (("0043712345", "00 form"), ("0712345034", "national")):
            r = self.get("/v1/audit?number=" + bad)
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.headers["Content-Type"], "application/problem+json")
            self.assertIn(word, r.json()["detail"])
        self.assertEqual(len(self.get("/v1/audit?kind=rule.skipped").json()["records"]), 1)
        # walk the whole trail two records at a time: every seq once, in order
        seen, after = [], None
        for _ in range(100):
            path = "/v1/audit?limit=2" + ("&after=%d" % after if after else "")
            page = self.get(path).json()
            seen += [x["seq"] for x in page["records"]]
            after = page["next_after"]
            if after is None:
                break
        everything = self.get("/v1/audit?limit=1000").json()["records"]
        self.assertEqual(seen, [x["seq"] for x in everything])
        self.assertEqual(seen, list(range(1, len(seen) + 1)))
        # by event: that event's whole story
        r = self.get("/v1/audit?event=" + self.ids[2])
        self.assertEqual([x["kind"] for x in r.json()["records"]],
                         ["event.received", "rule.decided", "job.queued"])
        for bad in ("limit=0", "limit=5000", "after=x", "job=-1", "since=yesterday"):
            self.assertEqual(self.get("/v1/audit?" + bad).status, 400, bad)

    def test_events_and_jobs(self):
        r = self.get("/v1/events/" + self.ids[0])
        self.assertEqual(r.status, 200, r)
        ev = r.json()["events"][0]
        self.assertEqual((ev["source"], ev["status"]), ("zd", "accepted"))
        self.assertEqual(json.loads(ev["body"])["n"], 0)
        self.assertEqual(self.get("/v1/events/no-such-event").status, 404)
        jobs = self.get("/v1/jobs?state=pending").json()["jobs"]
        self.assertEqual(len(jobs), 5)
        self.assertEqual(jobs[0]["path"], "/v3/dids/number:4371234500")
        self.assertEqual(self.get("/v1/jobs?state=dead").json()["jobs"], [])

    def test_retry_and_cancel_are_audited(self):
        jobs = self.get("/v1/jobs?state=pending").json()["jobs"]
        job = jobs[-1]["id"]
        # retry needs a dead job
        r = self.post("/v1/jobs/%d/retry" % job)
        self.assertEqual(r.status, 409, r)
        r = self.post("/v1/jobs/%d/cancel" % job)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"id": job, "state": "cancelled"})
        self.assertEqual(self.post("/v1/jobs/%d/cancel" % job).status, 409)
        # a job that does not exist is not a conflict: 404, for retry and cancel alike
        for action in ("retry", "cancel"):
            r = self.post("/v1/jobs/999999/" + action)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.headers["Content-Type"], "application/problem+json")
            self.assertIn("no job", r.json()["detail"])
            # the CLI says the same, not "not dead, left alone" (exit 1)
            c = self.srv.cli("jobs", "-c", self.srv.config_path, action, "999999")
            self.assertEqual(c.returncode, 1, c.stdout + c.stderr)
            self.assertEqual(c.stderr.strip(), "hookline jobs: job 999999: no such job")
            self.assertNotIn("left alone", c.stdout)
        self.assertEqual(self.get("/v1/jobs/%d/cancel" % job).status, 405)
        recs = self.get("/v1/audit?kind=job.cancelled").json()["records"]
        self.assertEqual(len(recs), 1)  # nothing audited for the missing job
        self.assertEqual(recs[0]["job_id"], job)
        self.assertEqual(recs[0]["detail"]["by"], "admin API")
        self.assertEqual(self.srv.query("SELECT state FROM jobs WHERE id = ?", (job,)),
                         [("cancelled",)])
        # resume and pause answer even when delivery is off, and say why
        r = self.post("/v1/delivery/resume")
        self.assertEqual(r.status, 409)
        self.assertIn("api_key", r.json()["detail"])
        r = self.post("/v1/delivery/pause")
        self.assertEqual(r.status, 409)
        self.assertIn("api_key", r.json()["detail"])
        self.assertEqual(self.srv.get("/readyz").status, 200)
        # the chain stays intact after admin writes
        v = self.srv.cli("audit", "verify", "-c", self.srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertNotIn(ADMIN, self.srv.log_text())


if __name__ == "__main__":
    unittest.main()

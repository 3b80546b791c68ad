"""The operations console over real HTTP (docs/contract.md section 9), on each store backend:
assets with a strict Content-Security-Policy and ETags, sign-in with admin.token or
admin.viewer_token and the session cookie's flags, the viewer's 403 on every change (cookie
and bearer alike), the CSRF and origin checks, audit records naming the role and session of
each change, sign-out and restart ending sessions, the dry run storing nothing, the audit
verification, and no token or cookie value in any answer, log line or audit record.
DeliveryPauseTest: POST /v1/delivery/pause (admin token or admin session with CSRF; viewer
403) stops delivery until a resume, audited with who and why; `hookline jobs pause` does the
same from another process.
ReplayTest: the console's replay of a candidate rule (admin only, CSRF, bounded body) runs
over the stored events off the HTTP thread, reports the changed events and stores, sends and
changes nothing but its rules.replayed audit record.

hookline delivers to didww-sim, so the story holds a real attempt with before/after and a
dead job (DIDWW refuses an unknown trunk with 422, max_attempts 1).
"""
import hashlib
import json
import os
import re
import time
import unittest

import hookline_harness
from hookline_harness import STORE_BACKEND, HooklineServer, pg_create_database, pg_drop_database
from sim_harness import (DID_A, DID_A_NUMBER, TRUNK_OFFICE, TRUNK_VIP, UNKNOWN_UUID,
                         DeliveryHooklineServer, SimServer, deadline_poll, delivery_config)

API_KEY = "console-didww-key-4e1f7a"
ADMIN = "console-admin-token-9c1d2e3f4a5b"
VIEWER = "console-viewer-token-7a6b5c4d3e2f"
RULE = """function on_event(ev)
  if ev.body.skip then return skip(ev.body.skip) end
  didww.route_did{number = ev.body.phone, trunk = ev.body.trunk}
end
"""
CHANGES = ["/v1/jobs/%d/retry", "/v1/jobs/%d/cancel", "/v1/delivery/resume", "/v1/delivery/pause",
           "/v1/rules/reload"]


def console_server(testcase, sim):
    cfg = delivery_config(sim, max_attempts=1, extra={"admin": {"viewer_token": "env:HL_VIEWER"}})
    srv = DeliveryHooklineServer(cfg, env={"DIDWW_API_KEY": API_KEY,
                                           "HOOKLINE_ADMIN_TOKEN": ADMIN, "HL_VIEWER": VIEWER})
    testcase.addClassCleanup(srv.cleanup)
    with open(os.path.join(srv.tmpdir, "main.lua"), "w", encoding="utf-8") as f:
        f.write(RULE)
    srv.start()
    return srv


class Session:
    """A signed-in console session: the cookie value and what the sign-in answered."""

    def __init__(self, srv, token, headers=None):
        self.srv = srv
        h = {"Authorization": "Bearer " + token, "Origin": self.origin()}
        h.update(headers or {})
        r = srv.request("POST", "/console/api/session", b"", h)
        assert r.status == 200, r
        self.set_cookie = r.headers["Set-Cookie"]
        self.cookie = re.match(r"hookline_session=([0-9a-f]+);", self.set_cookie).group(1)
        self.info = r.json()

    def origin(self):
        return "http://" + self.srv.host_header()

    def headers(self, csrf=True, origin=True, extra=None):
        h = {"Cookie": "hookline_session=" + self.cookie}
        if csrf:
            h["X-CSRF-Token"] = self.info["csrf"]
        if origin:
            h["Origin"] = self.origin()
            h["Sec-Fetch-Site"] = "same-origin"
        h.update(extra or {})
        return h

    def get(self, path):
        return self.srv.request("GET", path, None, self.headers(csrf=False, origin=False))

    def post(self, path, body=b"", **kw):
        return self.srv.request("POST", path, body, self.headers(**kw))


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = SimServer(key=API_KEY)
        cls.addClassCleanup(cls.sim.cleanup)
        cls.sim.start()
        cls.srv = console_server(cls, cls.sim)
        hdr = {"Content-Type": "application/json"}
        ok = cls.srv.post("crm", json.dumps({"id": "evt-ok", "phone": "+43 7123 4567",
                                             "trunk": TRUNK_VIP}).encode(), hdr)
        assert ok.status == 202, ok

        def states():
            return [s for (s,) in cls.srv.query("SELECT state FROM jobs ORDER BY id")]
        # the refused change only once the first is done: queued together, delivery would
        # coalesce them (the first superseded) and the story would hold no done job
        deadline_poll(lambda: states() == ["done"], 20)
        bad = cls.srv.post("crm", json.dumps({"id": "evt-bad", "phone": "+43 7123 4567",
                                              "trunk": UNKNOWN_UUID}).encode(), hdr)
        assert bad.status == 202, bad
        deadline_poll(lambda: sorted(states()) == ["dead", "done"], 20)
        cls.dead = cls.srv.query("SELECT id FROM jobs WHERE state = 'dead'")[0][0]
        cls.sessions = []

    def session(self, token):
        s = Session(self.srv, token)
        self.sessions.append(s)
        return s

    def job_state(self, job):
        return self.srv.query("SELECT state FROM jobs WHERE id = ?", (job,))[0][0]

    def audit(self, kind):
        r = self.srv.request("GET", "/v1/audit?limit=1000&kind=" + kind, None,
                             {"Authorization": "Bearer " + ADMIN})
        self.assertEqual(r.status, 200, r)
        return r.json()["records"]

    def test_assets_carry_a_strict_policy(self):
        r = self.srv.get("/console/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn(b'<script type="module" src="app.js">', r.body)
        csp = r.headers["Content-Security-Policy"]
        for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                     "frame-ancestors 'none'", "base-uri 'none'"):
            self.assertIn(part, csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)
        self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff")
        self.assertEqual(r.headers["Referrer-Policy"], "no-referrer")
        etag = r.headers["ETag"]
        self.assertTrue(etag.startswith('"'), etag)
        again = self.srv.request("GET", "/console/", None, {"If-None-Match": etag})
        self.assertEqual(again.status, 304)
        self.assertEqual(again.body, b"")
        js = self.srv.get("/console/app.js")
        self.assertEqual(js.status, 200)
        self.assertEqual(js.headers["Content-Type"], "text/javascript; charset=utf-8")
        self.assertNotEqual(js.headers["ETag"], etag)
        self.assertEqual(self.srv.get("/console/style.css").headers["Content-Type"],
                         "text/css; charset=utf-8")
        redirect = self.srv.get("/console")
        self.assertEqual((redirect.status, redirect.headers["Location"]), (308, "/console/"))
        for path in ("/console/nope.js", "/console/assets/app.js", "/console/api/nope"):
            r = self.srv.get(path)
            self.assertIn(r.status, (401, 404), path)
            self.assertIn("frame-ancestors 'none'", r.headers["Content-Security-Policy"])
        self.assertEqual(self.srv.request("POST", "/console/", b"").status, 405)
        # the console's JSON needs a session
        for path in ("/console/api/overview", "/console/api/rules", "/console/api/session",
                     "/console/api/dryrun?event=evt-ok", "/console/api/verify"):
            self.assertEqual(self.srv.get(path).status, 401, path)

    def test_sign_in_sets_a_strict_cookie(self):
        s = self.session(ADMIN)
        flags = [f.strip() for f in s.set_cookie.split(";")]
        self.assertIn("HttpOnly", flags)
        self.assertIn("SameSite=Strict", flags)
        self.assertIn("Path=/", flags)
        self.assertIn("Max-Age=43200", flags)
        self.assertNotIn("Secure", flags)  # plain HTTP on loopback
        self.assertEqual(len(s.cookie), 64)
        self.assertEqual(s.info["role"], "admin")
        self.assertEqual((s.info["idle_s"], s.info["absolute_s"]), (1800, 43200))
        self.assertNotIn(s.cookie, json.dumps(s.info))
        self.assertEqual(s.get("/console/api/session").json()["session"], s.info["session"])
        behind_tls = Session(self.srv, VIEWER, {"X-Forwarded-Proto": "https"})
        self.sessions.append(behind_tls)
        self.assertIn("Secure", [f.strip() for f in behind_tls.set_cookie.split(";")])
        self.assertEqual(behind_tls.info["role"], "viewer")
        # refused: a wrong token, a token in the URL, no or a foreign origin
        origin = {"Origin": s.origin()}
        for path, headers, status in (
                ("/console/api/session", dict(origin, Authorization="Bearer wrong-token-123456"), 401),
                ("/console/api/session", dict(origin, Authorization="Bearer " + ADMIN[:-1]), 401),
                ("/console/api/session", origin, 401),
                ("/console/api/session?token=" + ADMIN, origin, 401),
                ("/console/api/session", {"Authorization": "Bearer " + ADMIN}, 403),
                ("/console/api/session", {"Authorization": "Bearer " + ADMIN,
                                          "Origin": "http://evil.example"}, 403),
                ("/console/api/session", {"Authorization": "Bearer " + ADMIN,
                                          "Sec-Fetch-Site": "cross-site"}, 403)):
            r = self.srv.request("POST", path, b"", headers)
            self.assertEqual(r.status, status, (path, headers))
            self.assertNotIn("Set-Cookie", r.headers)
            self.assertEqual(r.headers["Content-Type"], "application/problem+json")

    def test_viewer_reads_but_every_change_is_403(self):
        v = self.session(VIEWER)
        for path in ("/v1/jobs", "/v1/audit?number=%2B43%207123%204567", "/v1/events/evt-ok",
                     "/console/api/overview", "/console/api/rules"):
            self.assertEqual(v.get(path).status, 200, path)
        bearer = {"Authorization": "Bearer " + VIEWER}
        self.assertEqual(self.srv.request("GET", "/v1/jobs", None, bearer).status, 200)
        for change in CHANGES:
            path = change % self.dead if "%d" in change else change
            r = v.post(path)
            self.assertEqual(r.status, 403, path)
            self.assertIn("viewer", r.json()["detail"])
            r = self.srv.request("POST", path, b"", bearer)
            self.assertEqual(r.status, 403, path)
        self.assertEqual(self.job_state(self.dead), "dead")
        # a viewer may verify the audit chain: it changes nothing
        self.assertIn(v.post("/console/api/verify").status, (200, 202))

    def test_changes_need_the_csrf_token_and_same_origin(self):
        a = self.session(ADMIN)
        path = "/v1/jobs/%d/retry" % self.dead
        for kw, why in (({"csrf": False}, "X-CSRF-Token"),
                        ({"extra": {"X-CSRF-Token": "0" * 64}}, "X-CSRF-Token"),
                        ({"extra": {"Origin": "http://evil.example"}}, "Origin"),
                        ({"extra": {"Sec-Fetch-Site": "cross-site"}}, "Sec-Fetch-Site"),
                        ({"origin": False}, "Origin")):
            r = a.post(path, **kw)
            self.assertEqual(r.status, 403, kw)
            self.assertIn(why, r.json()["detail"])
            self.assertEqual(self.job_state(self.dead), "dead")
        # another session's token does not do either
        other = self.session(ADMIN)
        r = a.post(path, extra={"X-CSRF-Token": other.info["csrf"]})
        self.assertEqual(r.status, 403)
        r = a.post(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"id": self.dead, "state": "pending"})
        handle = a.info["session"]
        console = [x for x in self.audit("admin.console") if x["detail"]["session"] == handle]
        self.assertEqual([x["detail"]["action"] for x in console], ["POST " + path])
        self.assertEqual(console[0]["detail"]["role"], "admin")
        retry = [x for x in self.audit("admin.job_retry") if x.get("job_id") == self.dead]
        self.assertEqual(retry[-1]["detail"]["by"], "console admin session " + handle)
        # the bearer API is unchanged: no CSRF token, "admin API" in the record
        deadline_poll(lambda: self.job_state(self.dead) == "dead", 20)
        r = self.srv.request("POST", path, b"", {"Authorization": "Bearer " + ADMIN})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.audit("admin.job_retry")[-1]["detail"]["by"], "admin API")
        deadline_poll(lambda: self.job_state(self.dead) == "dead", 20)

    def test_sign_out_ends_that_session_only(self):
        a, b = self.session(ADMIN), self.session(VIEWER)
        r = self.srv.request("DELETE", "/console/api/session", None, a.headers(csrf=False))
        self.assertEqual(r.status, 403)
        r = self.srv.request("DELETE", "/console/api/session", None, a.headers())
        self.assertEqual(r.status, 200, r)
        self.assertIn("Max-Age=0", r.headers["Set-Cookie"])
        self.assertEqual(a.get("/console/api/session").status, 401)
        self.assertEqual(a.get("/v1/jobs").status, 401)
        self.assertEqual(b.get("/v1/jobs").status, 200)

    def test_overview_rules_and_dry_run(self):
        a = self.session(ADMIN)
        o = a.get("/console/api/overview").json()
        self.assertGreaterEqual(o["current"]["events"], 2)
        self.assertGreaterEqual(o["current"]["jobs_dead"], 1)
        self.assertIn("422", o["didww_by_status"])
        self.assertEqual(o["paused"], False)
        self.assertGreaterEqual(len(o["series"]), 1)
        self.assertEqual(o["step_s"], 10)
        rules = a.get("/console/api/rules").json()
        self.assertEqual(rules["rule_version"], o["rule_version"])
        self.assertEqual(len(rules["rule_version"]), 16)

        def counts():
            return (self.srv.query("SELECT count(*) FROM events")[0][0],
                    self.srv.query("SELECT count(*) FROM jobs")[0][0],
                    self.srv.query("SELECT count(*) FROM audit")[0][0])
        before = counts()
        requests = len(self.sim.requests() or []) if self.sim.log_path else None
        r = a.get("/console/api/dryrun?event=evt-ok")
        self.assertEqual(r.status, 200, r)
        dry = r.json()
        self.assertEqual((dry["outcome"], dry["stored"], dry["sent"]), ("decided", False, False))
        self.assertEqual([j["path"] for j in dry["jobs"]], ["/v3/dids/number:" + DID_A_NUMBER])
        self.assertEqual(dry["jobs"][0]["number"], DID_A_NUMBER)
        self.assertEqual(counts(), before)
        if requests is not None:
            self.assertEqual(len(self.sim.requests()), requests)
        self.assertEqual(a.get("/console/api/dryrun?event=no-such").status, 404)
        self.assertEqual(a.get("/console/api/dryrun").status, 400)

    def test_rules_view_names_the_failed_reload(self):
        a = self.session(ADMIN)
        path = os.path.join(self.srv.tmpdir, "main.lua")
        version = a.get("/console/api/rules").json()["rule_version"]
        with open(path, "w", encoding="utf-8") as f:
            f.write("function on_event(ev)\n  if then end\nend\n")
        try:
            r = a.post("/v1/rules/reload")
            self.assertEqual(r.status, 422, r)
            rules = a.get("/console/api/rules").json()
            self.assertEqual(rules["rule_version"], version)  # the old rule keeps running
            reason = rules["last_reload_failed"]["detail"]["reason"]
            self.assertRegex(reason, r"main\.lua:2:")
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(RULE)
        r = a.post("/v1/rules/reload")
        self.assertEqual(r.status, 200, r)
        rules = a.get("/console/api/rules").json()
        self.assertEqual(rules["rule_version"], version)
        self.assertGreater(rules["last_reload"]["seq"], rules["last_reload_failed"]["seq"])
        actions = [x["detail"]["action"] for x in self.audit("admin.console")
                   if x["detail"]["session"] == a.info["session"]]
        self.assertEqual(actions, ["POST /v1/rules/reload"] * 2)

    def test_story_by_number_as_typed_and_by_did(self):
        a = self.session(VIEWER)
        by_number = a.get("/v1/audit?limit=1000&number=%2B43%20(7123)%2045-67").json()["records"]
        kinds = [x["kind"] for x in by_number]
        for k in ("event.received", "rule.decided", "job.queued", "job.attempt", "job.done",
                  "job.dead"):
            self.assertIn(k, kinds)
        attempts = [x for x in by_number if x["kind"] == "job.attempt" and x["http"]["status"] == 200]
        self.assertTrue(any("before" in x["detail"] and "after" in x["detail"] for x in attempts))
        by_did = a.get("/v1/audit?limit=1000&did=" + DID_A).json()["records"]
        self.assertTrue({x["seq"] for x in by_number} <= {x["seq"] for x in by_did})

    def test_verify_runs_off_the_http_thread(self):
        a = self.session(ADMIN)
        r = a.post("/console/api/verify")
        self.assertIn(r.status, (200, 202), r)
        deadline_poll(lambda: a.get("/console/api/verify").json()["state"] == "done", 20)
        last = a.get("/console/api/verify").json()["last"]
        self.assertEqual(last["result"], "intact", last)
        self.assertGreater(last["records"], 5)
        # the refusals of a change apply to starting it too
        self.assertEqual(a.post("/console/api/verify", csrf=False).status, 403)

    def test_z_no_token_or_cookie_anywhere(self):
        """Runs last (names sort): every answer, log line and audit record of the class."""
        self.assertTrue(self.sessions)
        secrets = [ADMIN, VIEWER, API_KEY] + [s.cookie for s in self.sessions] + \
                  [s.info["csrf"] for s in self.sessions]
        everything = self.srv.request("GET", "/v1/audit?limit=1000", None,
                                      {"Authorization": "Bearer " + ADMIN}).body.decode()
        log = self.srv.log_text()
        self.assertIn("console sign-in", log)
        bodies = [b.decode("utf-8", "replace") for b in self.srv.responses]
        for secret in secrets:
            self.assertNotIn(secret, everything)
            self.assertNotIn(secret, log)
            for b in bodies:
                if secret in (s.info["csrf"] for s in self.sessions) and '"csrf"' in b:
                    continue  # a session's own sign-in and session answers carry its CSRF token
                self.assertNotIn(secret, b)

    def test_zz_stops_cleanly(self):
        """Runs after every other test of the class: SIGTERM stops the service (sampler and
        verification threads included) with exit code 0 and no sanitizer report."""
        code = self.srv.stop()
        log = self.srv.log_text()
        self.assertEqual(code, 0, log[-6000:])
        for word in ("Sanitizer", "runtime error:", "LeakSanitizer"):
            self.assertNotIn(word, log)


class ConsoleRestartTest(unittest.TestCase):
    def test_restart_ends_every_session(self):
        srv = HooklineServer({"admin": {"token": "env:HL_ADMIN", "viewer_token": "env:HL_VIEWER"}},
                             env={"HL_ADMIN": ADMIN, "HL_VIEWER": VIEWER})
        self.addCleanup(srv.cleanup)
        srv.start()
        s = Session(srv, VIEWER)
        self.assertEqual(s.get("/v1/jobs").status, 200)
        self.assertEqual(srv.stop(), 0)
        srv.start()
        self.assertEqual(s.get("/v1/jobs").status, 401)
        self.assertEqual(s.get("/console/api/session").status, 401)

    def test_viewer_token_alone_and_config_checks(self):
        srv = HooklineServer({"admin": {"viewer_token": "env:HL_VIEWER"}}, env={"HL_VIEWER": VIEWER})
        self.addCleanup(srv.cleanup)
        srv.start()
        s = Session(srv, VIEWER)
        self.assertEqual(s.get("/v1/jobs").status, 200)
        self.assertEqual(srv.request("POST", "/console/api/session", b"",
                                     {"Authorization": "Bearer " + ADMIN,
                                      "Origin": s.origin()}).status, 401)
        # check: too short, and the same as admin.token
        bad = HooklineServer({"admin": {"token": "env:HL_ADMIN", "viewer_token": "env:HL_VIEWER"}},
                             env={"HL_ADMIN": ADMIN, "HL_VIEWER": ADMIN})
        self.addCleanup(bad.cleanup)
        r = bad.cli("check", "-c", bad.config_path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("admin.viewer_token", r.stderr)
        self.assertNotIn(ADMIN, r.stdout + r.stderr)


class DeliveryPauseTest(unittest.TestCase):
    """An operator's pause: nothing is sent until a resume, on either store backend."""

    @classmethod
    def setUpClass(cls):
        cls.sim = SimServer(key=API_KEY)
        cls.addClassCleanup(cls.sim.cleanup)
        cls.sim.start()
        cls.srv = console_server(cls, cls.sim)

    def bearer(self, path, body=b"", token=ADMIN, extra=None):
        h = {"Authorization": "Bearer " + token}
        h.update(extra or {})
        return self.srv.request("POST", path, body, h)

    def audit(self, kind):
        r = self.srv.request("GET", "/v1/audit?limit=1000&kind=" + kind, None,
                             {"Authorization": "Bearer " + ADMIN})
        self.assertEqual(r.status, 200, r)
        return r.json()["records"]

    def ready(self):
        return self.srv.get("/readyz").status == 200

    def route(self, event, trunk):
        r = self.srv.post("crm", json.dumps({"id": event, "phone": "+43 7123 4567",
                                             "trunk": trunk}).encode(),
                          {"Content-Type": "application/json"})
        self.assertEqual(r.status, 202, r)

    def job_state_of(self, event):
        for j in self.srv.request("GET", "/v1/jobs?limit=1000", None,
                                  {"Authorization": "Bearer " + ADMIN}).json()["jobs"]:
            if j["event_id"] == event:
                return j["state"]
        return None

    def test_pause_via_api_and_console_then_resume(self):
        self.assertTrue(self.ready())
        v = Session(self.srv, VIEWER)
        a = Session(self.srv, ADMIN)
        # refused: the viewer (session and bearer), no CSRF token, a foreign origin, no token
        for r, why in ((v.post("/v1/delivery/pause"), "viewer"),
                       (self.bearer("/v1/delivery/pause", token=VIEWER), "viewer"),
                       (a.post("/v1/delivery/pause", csrf=False), "X-CSRF-Token"),
                       (a.post("/v1/delivery/pause", extra={"Origin": "http://evil.example"}),
                        "Origin")):
            self.assertEqual(r.status, 403, r)
            self.assertIn(why, r.json()["detail"])
        self.assertEqual(self.srv.request("POST", "/v1/delivery/pause", b"").status, 401)
        # bad bodies: nothing paused
        for body, status, word in ((b"not json", 400, "JSON object"),
                                   (b'["x"]', 400, "JSON object"),
                                   (b'{"reason": 7}', 400, "string"),
                                   (json.dumps({"reason": "x" * 201}).encode(), 400, "200"),
                                   (json.dumps({"reason": "a\nb"}).encode(), 400, "control"),
                                   (json.dumps({"reason": "x" * 5000}).encode(), 413, "4096")):
            r = self.bearer("/v1/delivery/pause", body)
            self.assertEqual(r.status, status, (body[:20], r))
            self.assertEqual(r.headers["Content-Type"], "application/problem+json")
            self.assertIn(word, r.json()["detail"])
        self.assertEqual(self.srv.get("/v1/delivery/pause").status, 401)
        self.assertTrue(self.ready())
        self.assertEqual(self.audit("delivery.paused"), [])

        # the admin API pauses with a reason of 200 characters (not bytes)
        reason = "maintenance window \u00e9" + "." * 180
        r = self.bearer("/v1/delivery/pause", json.dumps({"reason": reason}).encode())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "paused", "paused": True, "reason": reason})
        r = self.srv.get("/readyz")
        self.assertEqual(r.status, 503, r)
        self.assertIn(reason, r.json()["detail"])
        rec = self.audit("delivery.paused")
        self.assertEqual(len(rec), 1)
        self.assertEqual((rec[0]["detail"]["by"], rec[0]["detail"]["reason"]),
                         ("admin API", reason))
        # a second pause changes nothing: 200, already_paused, the first reason
        r = a.post("/v1/delivery/pause", json.dumps({"reason": "again"}).encode())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "already_paused", "paused": True,
                                    "reason": reason})
        self.assertEqual(len(self.audit("delivery.paused")), 1)
        self.assertEqual(a.get("/console/api/overview").json()["paused_reason"], reason)

        # nothing is sent while paused
        sent = len(self.sim.requests())
        self.route("evt-p1", TRUNK_VIP)
        time.sleep(1.5)
        self.assertEqual(self.job_state_of("evt-p1"), "pending")
        self.assertEqual(len(self.sim.requests()), sent)
        # the admin session resumes: the job goes out
        r = a.post("/v1/delivery/resume")
        self.assertEqual((r.status, r.json()), (200, {"status": "resumed"}))
        self.assertTrue(deadline_poll(lambda: self.job_state_of("evt-p1") == "done", 10))
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_VIP)
        self.assertTrue(self.ready())

        # the admin session pauses with no body: the default reason, the session named
        r = a.post("/v1/delivery/pause")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "paused", "paused": True,
                                    "reason": "paused by an operator"})
        self.assertEqual(len(self.audit("delivery.paused")), 2, self.audit("delivery.paused"))
        rec = self.audit("delivery.paused")[-1]["detail"]
        self.assertEqual(rec["by"], "console admin session " + a.info["session"])
        self.assertEqual(rec["reason"], "paused by an operator")
        self.assertFalse(self.ready())
        # `hookline jobs resume` (another process) lifts it
        c = self.srv.cli("jobs", "-c", self.srv.config_path, "resume")
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
        self.assertTrue(deadline_poll(self.ready, 5))

        # `hookline jobs pause` (another process): the running service follows it
        sent = len(self.sim.requests())
        c = self.srv.cli("jobs", "-c", self.srv.config_path, "pause", "--reason", "cli says so")
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
        self.assertIn("delivery paused: cli says so", c.stdout)
        self.assertTrue(deadline_poll(lambda: not self.ready(), 5))
        self.assertIn("cli says so", self.srv.get("/readyz").json()["detail"])
        rec = self.audit("delivery.paused")[-1]["detail"]
        self.assertEqual((rec["by"], rec["reason"]), ("hookline jobs pause", "cli says so"))
        c = self.srv.cli("jobs", "-c", self.srv.config_path, "pause")
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
        self.assertIn("already paused: cli says so", c.stdout)
        for bad in (["--reason", "y" * 201], ["--reason", "a\tb"]):
            c = self.srv.cli("jobs", "-c", self.srv.config_path, "pause", *bad)
            self.assertEqual(c.returncode, 2, c.stdout + c.stderr)
        self.route("evt-p2", TRUNK_OFFICE)
        time.sleep(1.5)
        self.assertEqual(self.job_state_of("evt-p2"), "pending")
        self.assertEqual(len(self.sim.requests()), sent)
        r = self.bearer("/v1/delivery/resume")
        self.assertEqual((r.status, r.json()), (200, {"status": "resumed"}))
        self.assertTrue(deadline_poll(lambda: self.job_state_of("evt-p2") == "done", 10))
        self.assertEqual(self.sim.did(DID_A)["trunk"], TRUNK_OFFICE)
        self.assertEqual(len(self.audit("delivery.paused")), 3)
        for text in (self.srv.log_text(), json.dumps(self.audit("delivery.*"))):
            for secret in (ADMIN, VIEWER, API_KEY, a.cookie, v.cookie):
                self.assertNotIn(secret, text)



CANDIDATE = """function on_event(ev)
  if ev.body.n and ev.body.n % 2 == 0 then
    didww.route_did{number = ev.body.phone, trunk = ev.body.trunk}
    return
  end
  if ev.body.skip then return skip(ev.body.skip) end
  didww.route_did{number = ev.body.phone, trunk = ev.body.trunk}
end
"""


class ReplayTest(unittest.TestCase):
    """Four skipped events; the candidate routes the even ones: two changes."""

    @classmethod
    def setUpClass(cls):
        cls.sim = SimServer(key=API_KEY)
        cls.addClassCleanup(cls.sim.cleanup)
        cls.sim.start()
        cls.srv = console_server(cls, cls.sim)
        for n in range(4):
            r = cls.srv.post("crm", json.dumps({"id": "evt-r%d" % n, "n": n, "skip": "quiet",
                                                "phone": "+43 7123 4567",
                                                "trunk": TRUNK_VIP}).encode(),
                             {"Content-Type": "application/json"})
            assert r.status == 202, r

    def replay(self, who, body, extra=None, **kw):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(extra or {})
        return who.post("/console/api/replay", data, extra=h, **kw)

    def wait_done(self, who):
        got = {}

        def done():
            got["r"] = who.get("/console/api/replay")
            return got["r"].json()["state"] == "done"
        self.assertTrue(deadline_poll(done, 30), got.get("r"))
        return got["r"].json()["last"]

    def counts(self):
        return (self.srv.query("SELECT COUNT(*) FROM events")[0][0],
                self.srv.query("SELECT COUNT(*) FROM jobs")[0][0])

    def test_candidate_changes_the_even_events(self):
        a = Session(self.srv, ADMIN)
        before = self.counts()
        version = a.get("/console/api/rules").json().get("version")
        sent = len(self.sim.requests())
        r = self.replay(a, {"rule": CANDIDATE})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["state"], "running")
        last = self.wait_done(a)
        rep = last["report"]
        self.assertEqual((rep["events"], rep["unchanged"], rep["changed"], rep["failed"]),
                         (4, 2, 2, 0), rep)
        self.assertEqual(sorted(c["event_id"] for c in rep["changes"]), ["evt-r0", "evt-r2"])
        change = rep["changes"][0]
        self.assertEqual(change["source"], "crm")
        self.assertEqual(change["before"], [])
        self.assertEqual(change["after"][0]["method"], "PATCH")
        self.assertEqual(rep["actions"], {change["after"][0]["action"]: {"before": 0, "after": 2}})
        self.assertEqual(rep["changes_not_listed"], 0)
        sha = hashlib.sha256(CANDIDATE.encode()).hexdigest()
        self.assertEqual(last["candidate_sha256"], sha)
        self.assertEqual(last["by"], "console admin session " + a.info["session"])
        # read-only: nothing stored but the audit record, nothing sent, the rule in force kept
        self.assertEqual(self.counts(), before)
        self.assertEqual(len(self.sim.requests()), sent)
        self.assertEqual(a.get("/console/api/rules").json().get("version"), version)
        recs = [x for x in self.audit("rules.replayed") if x["detail"]["candidate_sha256"] == sha]
        self.assertEqual(len(recs), 1)
        d = recs[0]["detail"]
        self.assertEqual((d["by"], d["role"], d["session"]),
                         ("console admin session " + a.info["session"], "admin", a.info["session"]))
        self.assertEqual((d["events"], d["unchanged"], d["changed"], d["failed"]), (4, 2, 2, 0))
        self.assertNotIn("rule", d)  # the candidate's text is not in the trail, its hash is
        # the filters: limit, source, since
        r = self.replay(a, {"rule": CANDIDATE, "limit": 1, "source": "crm"})
        self.assertEqual(r.status, 202, r)
        rep = self.wait_done(a)["report"]
        self.assertEqual((rep["events"], [c["event_id"] for c in rep["changes"]]), (1, ["evt-r0"]))
        r = self.replay(a, {"rule": CANDIDATE, "since": time.time() + 3600})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(self.wait_done(a)["report"]["events"], 0)
        # the admin token works too, named "admin API"
        r = self.srv.request("POST", "/console/api/replay",
                             json.dumps({"rule": CANDIDATE, "limit": 2}).encode(),
                             {"Authorization": "Bearer " + ADMIN,
                              "Content-Type": "application/json"})
        self.assertEqual(r.status, 202, r)
        last = self.wait_done(a)
        self.assertEqual((last["by"], last["report"]["changed"]), ("admin API", 1))

    def audit(self, kind):
        r = self.srv.request("GET", "/v1/audit?limit=1000&kind=" + kind, None,
                             {"Authorization": "Bearer " + ADMIN})
        self.assertEqual(r.status, 200, r)
        return r.json()["records"]

    def test_refusals(self):
        a = Session(self.srv, ADMIN)
        v = Session(self.srv, VIEWER)
        # a syntax error: 422 naming the line
        r = self.replay(a, {"rule": "function on_event(ev)\n  local x = = 1\nend\n"})
        self.assertEqual(r.status, 422, r)
        self.assertIn("candidate.lua:2:", r.json()["detail"])
        # the viewer: 403 for the replay and its result, by session and by token
        r = self.replay(v, {"rule": CANDIDATE})
        self.assertEqual(r.status, 403, r)
        self.assertIn("viewer", r.json()["detail"])
        self.assertEqual(v.get("/console/api/replay").status, 403)
        bearer = {"Authorization": "Bearer " + VIEWER}
        self.assertEqual(self.srv.request("POST", "/console/api/replay",
                                          json.dumps({"rule": CANDIDATE}).encode(),
                                          bearer).status, 403)
        self.assertEqual(self.srv.request("GET", "/console/api/replay", None, bearer).status, 403)
        self.assertEqual(self.srv.request("POST", "/console/api/replay", b"{}").status, 401)
        # CSRF
        r = self.replay(a, {"rule": CANDIDATE}, csrf=False)
        self.assertEqual(r.status, 403, r)
        self.assertIn("X-CSRF-Token", r.json()["detail"])
        r = self.replay(a, {"rule": CANDIDATE}, extra={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 403, r)
        # too large: the body, and the candidate alone
        r = self.replay(a, {"rule": "-- " + "x" * (400 * 1024)})
        self.assertEqual(r.status, 413, r)
        r = self.replay(a, {"rule": "-- " + "x" * (260 * 1024)})
        self.assertEqual(r.status, 413, r)
        self.assertIn("262144", r.json()["detail"])
        # bad bodies and filters
        for body, word in ((b"", "JSON object"), (b"nope", "JSON object"),
                           ({"rule": ""}, "rule"), ({"limit": 5}, "rule"),
                           ({"rule": CANDIDATE, "limit": 0}, "limit"),
                           ({"rule": CANDIDATE, "limit": 100001}, "limit"),
                           ({"rule": CANDIDATE, "source": "nope"}, "source"),
                           ({"rule": CANDIDATE, "since": "yesterday"}, "since")):
            r = self.replay(a, body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(word, r.json()["detail"])
        self.assertEqual(self.srv.request("PUT", "/console/api/replay", b"",
                                          a.headers()).status, 405)
        recs = [x for x in self.audit("rules.replayed")
                if x["detail"]["by"] != "console admin session " + a.info["session"]]
        self.assertEqual([x for x in recs if "viewer" in x["detail"]["by"]], [])



@unittest.skipIf(STORE_BACKEND != "pg", "instances share a pause only on PostgreSQL")
class SharedPauseTest(unittest.TestCase):
    """Two instances on one database: a pause through one pauses the other; a resume
    through the other lifts both."""

    def test_pause_on_one_pauses_the_other(self):
        dbname = pg_create_database()
        self.addCleanup(pg_drop_database, dbname)
        sim = SimServer(key=API_KEY)
        self.addCleanup(sim.cleanup)
        sim.start()
        servers = []
        for ident in ("hl-p1", "hl-p2"):
            cfg = delivery_config(sim)
            cfg["store"] = {"url": hookline_harness._pg_url(dbname),
                            "password": "file:" + hookline_harness.PG_PASSFILE}
            cfg["instance"] = {"id": ident}
            srv = DeliveryHooklineServer(cfg, env={"DIDWW_API_KEY": API_KEY,
                                                   "HOOKLINE_ADMIN_TOKEN": ADMIN})
            self.addCleanup(srv.cleanup)
            with open(os.path.join(srv.tmpdir, "main.lua"), "w", encoding="utf-8") as f:
                f.write(RULE)
            srv.start()
            servers.append(srv)
        one, two = servers
        admin = {"Authorization": "Bearer " + ADMIN}
        self.assertEqual(two.get("/readyz").status, 200)
        r = one.request("POST", "/v1/delivery/pause", b'{"reason": "shared maintenance"}', admin)
        self.assertEqual((r.status, r.json()["status"]), (200, "paused"))
        self.assertTrue(deadline_poll(lambda: two.get("/readyz").status == 503, 5))
        self.assertIn("shared maintenance", two.get("/readyz").json()["detail"])
        # the other one knows: a pause there changes nothing
        r = two.request("POST", "/v1/delivery/pause", b"", admin)
        self.assertEqual(r.json(), {"status": "already_paused", "paused": True,
                                    "reason": "shared maintenance"})
        r = two.request("POST", "/v1/delivery/resume", b"", admin)
        self.assertEqual((r.status, r.json()), (200, {"status": "resumed"}))
        self.assertTrue(deadline_poll(lambda: one.get("/readyz").status == 200, 5))
        kinds = [x["kind"] for x in one.request("GET", "/v1/audit?kind=delivery.*", None,
                                                 admin).json()["records"]]
        self.assertEqual(kinds, ["delivery.paused", "delivery.resumed"])


if __name__ == "__main__":
    unittest.main(verbosity=2)

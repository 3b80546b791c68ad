"""Runs tests/browser/console.spec.mjs: the operations console in headless Chromium.

This runner sets the stage with the integration harness (tests/integration): didww-sim,
a `hookline serve` on the store backend HOOKLINE_TEST_STORE names (sqlite or pg) with
admin.token and admin.viewer_token, events whose headers, body, event id, skip reason and
rule failure carry script and markup payloads, a job DIDWW answered (before/after in the
story) and two dead jobs. A second loopback server on another port plays the attacker's
site for the CSRF attempt. It then installs the pinned playwright-core (package.json +
package-lock.json, `npm ci`, into HOOKLINE_BROWSER_NODE_DIR or the build dir; npm's cache
makes later runs offline) and runs the spec with Debian's /usr/bin/chromium. Screenshots
of every view land in HOOKLINE_BROWSER_ARTIFACTS (default: <build>/browser-artifacts).
Nothing is skipped: without chromium or npm the test fails saying so.
"""
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from hookline_harness import HOOKLINE_BIN  # noqa: E402
from sim_harness import (DID_A, DID_B_NUMBER, TRUNK_VIP, UNKNOWN_UUID,  # noqa: E402
                         DeliveryHooklineServer, SimServer, deadline_poll, delivery_config)

CHROMIUM = "/usr/bin/chromium"
API_KEY = "browser-didww-key-3f9a1c"
ADMIN = "browser-admin-token-5e6f7a8b9c0d"
VIEWER = "browser-viewer-token-1a2b3c4d5e6f"
PWN_IMG = "<img src=x onerror=\"window.__pwned='img'\">"
PWN_SCRIPT = "<script>window.__pwned='script'</script>"
PWN_LINK = "javascript:window.__pwned='link'"
RULE = """function on_event(ev)
  if ev.body.boom then error(ev.body.boom) end
  if ev.body.skip then
    log.info(ev.body.skip)
    return skip(ev.body.skip)
  end
  didww.route_did{number = ev.body.phone, trunk = ev.body.trunk}
end
"""
# The candidate the admin replays: another trunk for every route (three changes), no
# more failure for "boom" (a fourth), a failure on the hostile "note" event.
CANDIDATE = """function on_event(ev)
  if ev.body.note then error(ev.body.note) end
  if ev.body.boom then return skip("no more boom") end
  if ev.body.skip then return skip(ev.body.skip) end
  didww.route_did{number = ev.body.phone, trunk = "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"}
end
"""
BUILD_DIR = os.path.dirname(os.path.abspath(HOOKLINE_BIN))


class EvilSite:
    """Another origin on loopback whose page tries to make the console change a job."""

    def __init__(self, target):
        page = ("<!doctype html><title>evil</title><body>"
                "<form id=f method=POST action='%s'></form>"
                "<script>fetch('%s', {method: 'POST', credentials: 'include', mode: 'no-cors'})"
                ".finally(() => document.getElementById('f').submit());</script>" % (target, target))
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        # "localhost" is another origin (and site) than the console's 127.0.0.1.
        return "http://localhost:%d/" % self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def install_playwright():
    """npm ci of the pinned playwright-core into a directory of its own; returns its path."""
    if not shutil.which("npm") or not shutil.which("node"):
        raise AssertionError("node and npm are needed for the browser tests (scripts/deps.sh "
                             "installs nodejs and npm for the test profile)")
    target = os.environ.get("HOOKLINE_BROWSER_NODE_DIR") or os.path.join(BUILD_DIR, "browser-node")
    os.makedirs(target, exist_ok=True)
    lock = open(os.path.join(HERE, "package-lock.json"), "rb").read()
    stamp = os.path.join(target, "node_modules", ".hookline-lock")
    if os.path.exists(stamp) and open(stamp, "rb").read() == lock:
        return target
    for name in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(HERE, name), os.path.join(target, name))
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline",
                        "--ignore-scripts"], cwd=target, capture_output=True, text=True,
                       timeout=240)
    if r.returncode != 0:
        raise AssertionError("npm ci failed:\n" + r.stdout + r.stderr)
    with open(stamp, "wb") as f:
        f.write(lock)
    return target


class ConsoleBrowserTest(unittest.TestCase):
    def test_console_in_chromium(self):
        self.assertTrue(os.access(CHROMIUM, os.X_OK),
                        "%s is missing: scripts/deps.sh installs chromium for the test profile"
                        % CHROMIUM)
        node_dir = install_playwright()
        sim = SimServer(key=API_KEY)
        self.addCleanup(sim.cleanup)
        sim.start()
        cfg = delivery_config(sim, max_attempts=1,
                              extra={"admin": {"viewer_token": "env:HL_VIEWER"}})
        srv = DeliveryHooklineServer(cfg, env={"DIDWW_API_KEY": API_KEY,
                                               "HOOKLINE_ADMIN_TOKEN": ADMIN,
                                               "HL_VIEWER": VIEWER})
        self.addCleanup(srv.cleanup)
        with open(os.path.join(srv.tmpdir, "main.lua"), "w", encoding="utf-8") as f:
            f.write(RULE)
        srv.start()

        def send(body, extra=None):
            h = {"Content-Type": "application/json"}
            h.update(extra or {})
            r = srv.post("crm", json.dumps(body).encode(), h)
            self.assertEqual(r.status, 202, r)
            return r.json()["event_id"]

        send({"id": "evt-route", "phone": "+43 7123 4567", "trunk": TRUNK_VIP})

        def jobs():
            return srv.query("SELECT id, state, number FROM jobs ORDER BY id")
        # the refused change only once the first is done: queued together, delivery would
        # coalesce them (the first superseded) and the story would hold no done job
        deadline_poll(lambda: [s for _, s, _ in jobs()] == ["done"], 30)
        send({"id": "evt-refused", "phone": "+43 7123 4567", "trunk": UNKNOWN_UUID})
        send({"id": "evt-other", "phone": "+" + DID_B_NUMBER, "trunk": UNKNOWN_UUID})
        xss_id = PWN_IMG
        send({"id": xss_id, "skip": PWN_IMG + PWN_SCRIPT, "note": PWN_SCRIPT, "link": PWN_LINK,
              "html": "<a href=\"" + PWN_LINK + "\">click</a>"},
             {"X-Note": PWN_IMG, "X-Link": PWN_LINK})
        send({"id": "evt-boom", "boom": PWN_SCRIPT + PWN_IMG})
        deadline_poll(lambda: sorted(s for _, s, _ in jobs()) == ["dead", "dead", "done"], 30)
        rows = jobs()
        self.assertEqual(sorted(s for _, s, _ in rows), ["dead", "dead", "done"], rows)
        dead_a = next(i for i, s, n in rows if s == "dead" and n != DID_B_NUMBER)
        dead_b = next(i for i, s, n in rows if s == "dead" and n == DID_B_NUMBER)

        base = "http://127.0.0.1:%d" % srv.port
        evil = EvilSite(base + "/v1/jobs/%d/retry" % dead_b)
        self.addCleanup(evil.close)
        artifacts = os.environ.get("HOOKLINE_BROWSER_ARTIFACTS") or os.path.join(
            BUILD_DIR, "browser-artifacts", os.environ.get("HOOKLINE_TEST_STORE") or "sqlite")
        os.makedirs(artifacts, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": srv.tmpdir,
            "PLAYWRIGHT_CORE": os.path.join(node_dir, "node_modules", "playwright-core",
                                            "index.mjs"),
            "CHROMIUM": CHROMIUM, "BASE_URL": base, "ADMIN_TOKEN": ADMIN,
            "VIEWER_TOKEN": VIEWER, "DEAD_JOB": str(dead_a), "OTHER_DEAD_JOB": str(dead_b),
            "NUMBER_TYPED": "+43 (7123) 45-67", "DID": DID_A, "XSS_EVENT": xss_id,
            "EVIL_URL": evil.url, "ARTIFACTS": artifacts, "CANDIDATE": CANDIDATE,
        }
        r = subprocess.run(["node", os.path.join(HERE, "console.spec.mjs")], env=env,
                           capture_output=True, text=True, timeout=240)
        sys.stderr.write(r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, "console.spec.mjs failed (see above)")
        # What the browser did, as the service saw it: the admin's retry of dead_a is
        # audited with its session, the attacker's page changed nothing.
        st = dict((i, s) for i, s, _ in jobs())
        self.assertEqual(st[dead_b], "dead")
        trail = srv.request("GET", "/v1/audit?limit=1000&kind=admin.*", None,
                            {"Authorization": "Bearer " + ADMIN}).json()["records"]
        retries = [x for x in trail if x["kind"] == "admin.job_retry"]
        self.assertEqual([x["job_id"] for x in retries], [dead_a])
        self.assertTrue(retries[0]["detail"]["by"].startswith("console admin session "))
        self.assertFalse([x for x in trail if x["kind"] == "admin.console" and
                          x["detail"]["role"] != "admin"])
        # the admin's pause from the Jobs view: its session and reason, then the resume
        pauses = srv.request("GET", "/v1/audit?limit=1000&kind=delivery.*", None,
                             {"Authorization": "Bearer " + ADMIN}).json()["records"]
        self.assertEqual([x["kind"] for x in pauses], ["delivery.paused", "delivery.resumed"])
        self.assertTrue(pauses[0]["detail"]["by"].startswith("console admin session "))
        self.assertEqual(pauses[0]["detail"]["reason"], "browser maintenance <b>window</b>")
        # the replay: one rules.replayed record with the session, nothing else stored
        replays = srv.request("GET", "/v1/audit?limit=1000&kind=rules.replayed", None,
                              {"Authorization": "Bearer " + ADMIN}).json()["records"]
        self.assertEqual(len(replays), 1)
        self.assertTrue(replays[0]["detail"]["by"].startswith("console admin session "))
        self.assertEqual((replays[0]["detail"]["changed"], replays[0]["detail"]["failed"]), (4, 1))
        self.assertEqual(srv.query("SELECT COUNT(*) FROM events")[0][0], 5)
        for secret in (ADMIN, VIEWER, API_KEY):
            self.assertNotIn(secret, srv.log_text())
            self.assertNotIn(secret, r.stdout + r.stderr)
        # SIGTERM ends the service with its console threads: exit 0, no sanitizer report.
        code = srv.stop()
        log = srv.log_text()
        self.assertEqual(code, 0, log[-6000:])
        self.assertNotIn("Sanitizer", log)
        for name in ("overview", "did-story", "did-story-phone", "event", "jobs-viewer",
                     "jobs-admin", "jobs-paused", "replay", "tail", "rules", "integrity", "signin"):
            path = os.path.join(artifacts, name + ".png")
            self.assertTrue(os.path.getsize(path) > 1000, path)


if __name__ == "__main__":
    unittest.main(verbosity=2)

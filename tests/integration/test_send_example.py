"""scripts/send-example.sh against the real service, as a newcomer uses it after
scripts/run.sh: for every source of conf/hookline.json the example webhook of
tests/fixtures/ is signed the way that source's verify block requires and answered 202,
and 200 duplicate when sent again; the secrets come from var/dev-secrets.env as run.sh
writes it (a variable set in the environment wins) and are never printed.

The service runs as the harness starts it (its own temp dir, port 0) with
conf/hookline.json's sources and rules, delivering to didww-sim loaded with
conf/didww-sim-state.json (as run.sh does), so each planned change also reaches the
simulator. The script runs from a copy in a temp tree laid out like the repository
(scripts/, var/, tests -> the real tests/), so the real var/ is never touched.

Run: HOOKLINE_BIN=$PWD/build/hookline python3 tests/integration/test_send_example.py -v
"""

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hookline_harness import base_env, make_tmpdir  # noqa: E402
from sim_harness import (  # noqa: E402
    SOURCE_DIR,
    DeliveryHooklineServer,
    SimServer,
    deadline_poll,
)

CONF = os.path.join(SOURCE_DIR, "conf", "hookline.json")
SIM_STATE = os.path.join(SOURCE_DIR, "conf", "didww-sim-state.json")
SCRIPT_TIMEOUT_S = 60


def run_sh_secrets():
    """The secrets run.sh generates, in its format."""
    out = {v: secrets.token_hex(24) for v in ("ZENDESK_SECRET", "HUBSPOT_SECRET", "ZAPIER_TOKEN",
                                              "FRESHDESK_PASSWORD", "HOOKLINE_ADMIN_TOKEN",
                                              "SIM_DIDWW_API_KEY")}
    out["CRM_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return out


class SendExampleTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        with open(CONF, encoding="utf-8") as f:
            cls.conf = json.load(f)
        cls.secrets = run_sh_secrets()

        # A tree laid out like the repository, holding run.sh's secrets file.
        cls.repo = make_tmpdir("hookline-send-example-")
        if not os.environ.get("HOOKLINE_KEEP_TMP"):
            cls.addClassCleanup(shutil.rmtree, cls.repo, True)
        os.makedirs(os.path.join(cls.repo, "scripts"))
        shutil.copy(os.path.join(SOURCE_DIR, "scripts", "send-example.sh"),
                    os.path.join(cls.repo, "scripts"))
        os.symlink(os.path.join(SOURCE_DIR, "tests"), os.path.join(cls.repo, "tests"))
        os.makedirs(os.path.join(cls.repo, "var"), mode=0o700)
        path = os.path.join(cls.repo, "var", "dev-secrets.env")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.writelines("%s=%s\n" % kv for kv in cls.secrets.items())

        with open(SIM_STATE, encoding="utf-8") as f:
            state = json.load(f)
        cls.sim = SimServer(state=state, key=cls.secrets["SIM_DIDWW_API_KEY"])
        cls.addClassCleanup(cls.sim.cleanup)
        cls.sim.start()

        cfg = json.loads(json.dumps(cls.conf))
        cfg["store"] = {}  # the harness's store: SQLite in the temp dir, or PostgreSQL
        cfg["didww"]["base_url"] = cls.sim.base_url
        rules = os.path.join(SOURCE_DIR, "conf", cfg["rules"]["script"])
        cfg["rules"]["script"] = rules
        cfg["rules"]["data"] = {k: os.path.join(SOURCE_DIR, "conf", v)
                                for k, v in cfg["rules"]["data"].items()}
        env = dict(cls.secrets, DIDWW_API_KEY=cls.secrets["SIM_DIDWW_API_KEY"])
        cls.srv = DeliveryHooklineServer(cfg, env=env)
        cls.addClassCleanup(cls.srv.cleanup)
        cls.srv.start()

    def send(self, *args, env=None):
        """Runs the script with the environment of a new terminal (no secret in it)."""
        e = {"HOOKLINE_URL": "http://127.0.0.1:%d" % self.srv.port,
             "HOOKLINE_CONFIG": self.srv.config_path}
        e.update(env or {})
        r = subprocess.run(["bash", os.path.join(self.repo, "scripts", "send-example.sh")]
                           + list(args), env=base_env(e), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
        for name, value in self.secrets.items():
            self.assertNotIn(value, r.stdout + r.stderr, "%s was printed" % name)
        return r

    def answer(self, r):
        """(status, answer JSON) from the script's output: "HTTP NNN" then the body."""
        lines = r.stdout.splitlines()
        self.assertTrue(lines and lines[0].startswith("HTTP "), r)
        return int(lines[0][5:]), json.loads("\n".join(lines[1:]))

    def test_every_source_is_answered_202_then_200_duplicate(self):
        sources = sorted(self.conf["sources"])
        self.assertEqual(len(sources), 5, sources)
        accepted = {}
        for source in sources:
            with self.subTest(source=source):
                r = self.send(source)
                self.assertEqual(r.returncode, 0, r)
                status, doc = self.answer(r)
                self.assertEqual((status, doc["status"]), (202, "accepted"), r.stdout)
                accepted[source] = doc
                r = self.send(source)
                self.assertEqual(r.returncode, 0, r)
                self.assertEqual(self.answer(r), (200, {"event_id": doc["event_id"],
                                                        "status": "duplicate"}))
        # Each event was stored once and every change it planned reached the simulator.
        planned = sum(doc["jobs"] for doc in accepted.values())
        self.assertGreater(planned, 0)

        def final():
            rows = self.srv.query("SELECT state FROM jobs")
            done = len(rows) == planned and all(s in ("done", "dead") for (s,) in rows)
            return rows if done else None
        rows = deadline_poll(final, 20)
        self.assertTrue(rows, self.srv.query("SELECT id, state, last_status FROM jobs"))
        self.assertEqual({s for (s,) in rows}, {"done"})
        self.assertTrue(any(e["method"] == "PATCH" for e in self.sim.requests()))
        for source, doc in accepted.items():
            self.assertEqual(self.srv.count_events(source, doc["event_id"]), 1, source)

    def test_named_file_and_the_environment_winning(self):
        form = os.path.join(self.repo, "tests", "fixtures", "zapier_oncall.form")
        # A token set in the shell wins over the file: a wrong one is refused (401, exit 1).
        r = self.send("zapier", form, env={"ZAPIER_TOKEN": "not-the-token-0123456789"})
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(self.answer(r)[0], 401)
        self.assertNotIn("not-the-token-0123456789", r.stdout + r.stderr)
        # The right one from the shell is accepted (or a duplicate of the first test's).
        r = self.send("zapier", form, env={"ZAPIER_TOKEN": self.secrets["ZAPIER_TOKEN"]})
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(self.answer(r)[0], (200, 202))
        # The normal Zendesk ticket plans nothing, but is signed and stored all the same.
        normal = os.path.join(self.repo, "tests", "fixtures", "zendesk_ticket_normal.json")
        with open(normal, encoding="utf-8") as f:
            event_id = json.load(f)["id"]  # sources.zendesk.event_id is json:/id
        r = self.send("zendesk", normal)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(self.answer(r), (202, {"event_id": event_id, "status": "accepted",
                                                "jobs": 0}))

    def test_usage_errors(self):
        r = self.send("nosuchsource")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("no source 'nosuchsource'", r.stderr)
        self.assertIn("zendesk", r.stderr)  # the sources there are
        r = self.send()
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("usage", r.stderr)
        r = self.send("--help")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("HOOKLINE_URL", r.stdout)


if __name__ == "__main__":
    unittest.main()

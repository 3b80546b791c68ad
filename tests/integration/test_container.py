"""The container files, checked against the build (no container engine runs here).

docker/Dockerfile's default command must start as shipped: its config
(conf/container/hookline.json, copied to /etc/hookline) passes `check` with an empty
environment, listens on all interfaces on the port the image exposes, keeps its store in
the image's volume, and `serve` starts with it and answers /healthz and /readyz (run here
with only the address and the store's directory moved to the test's own). docker/compose.yaml
must name a config that exists, pass every secret that config reads from the environment,
and that config must pass `check` against a real PostgreSQL when the run has one.
"""
import json
import os
import re
import shutil
import unittest

from hookline_harness import (PG_PASSFILE, PG_URL, HooklineServer, _pg_url, make_tmpdir,
                              pg_create_database, pg_drop_database, run_cli)

REPO = os.environ.get("HOOKLINE_SOURCE_DIR",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile")
COMPOSE = os.path.join(REPO, "docker", "compose.yaml")


def image_path(path):
    """The repository file behind a path inside the image (conf is copied to /etc/hookline)."""
    assert path.startswith("/etc/hookline/"), path
    return os.path.join(REPO, "conf", path[len("/etc/hookline/"):])


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def env_secrets(cfg):
    """Every NAME a config reads as "env:NAME"."""
    names = set()

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v.startswith("env:"):
            names.add(v[4:])
    walk(cfg)
    return names


class DockerfileTest(unittest.TestCase):
    def setUp(self):
        self.text = read(DOCKERFILE)
        cmd = re.search(r'^CMD \[(.*)\]$', self.text, re.M)
        self.assertIsNotNone(cmd, "Dockerfile has no CMD")
        self.cmd = json.loads("[" + cmd.group(1) + "]")
        self.volume = re.search(r"^VOLUME (\S+)$", self.text, re.M).group(1)
        self.port = int(re.search(r"^EXPOSE (\d+)$", self.text, re.M).group(1))
        self.assertEqual(self.cmd[:2], ["serve", "-c"])
        self.config_path = image_path(self.cmd[2])
        self.cfg = json.loads(read(self.config_path))

    def test_default_config_fits_the_image(self):
        self.assertEqual(self.cfg["listen"]["host"], "0.0.0.0")  # reachable from outside
        self.assertEqual(self.cfg["listen"]["port"], self.port)
        url = self.cfg["store"]["url"]
        self.assertTrue(url.startswith("sqlite:" + self.volume + "/"), url)
        self.assertEqual(env_secrets(self.cfg), set(), "the default config must need no secret")
        self.assertIn("libpq5", self.text)  # the binary links libpq

    def test_default_config_passes_check_with_no_environment(self):
        r = run_cli(["check", "-c", self.config_path], env={})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok", r.stdout)

    def test_default_config_serves(self):
        """As shipped but for the address (loopback, any port) and the store's directory."""
        tmp = make_tmpdir()
        self.addCleanup(shutil.rmtree, tmp, True)
        rules = os.path.join(tmp, "rules")
        shutil.copytree(os.path.join(REPO, "conf", "rules"), rules)
        cfg = json.loads(json.dumps(self.cfg))
        cfg["store"]["url"] = cfg["store"]["url"].replace(self.volume, os.path.join(tmp, "vol"))
        os.makedirs(os.path.join(tmp, "vol"))
        conf_dir = os.path.join(tmp, "container")
        os.makedirs(conf_dir)
        srv = HooklineServer(cfg, tmpdir=conf_dir)
        self.addCleanup(srv.cleanup)
        srv.start()
        self.assertEqual(srv.get("/healthz").status, 200)
        self.assertEqual(srv.get("/readyz").status, 200)
        self.assertTrue(os.path.exists(os.path.join(tmp, "vol", "hookline.db")))


class ComposeTest(unittest.TestCase):
    def setUp(self):
        self.text = read(COMPOSE)
        cmd = re.search(r'command: \[(.*)\]', self.text)
        self.assertIsNotNone(cmd)
        args = json.loads("[" + cmd.group(1) + "]")
        self.assertEqual(args[:2], ["serve", "-c"])
        self.config_path = image_path(args[2])
        self.cfg = json.loads(read(self.config_path))

    def test_every_secret_the_config_reads_is_passed(self):
        passed = set(re.findall(r"^      - ([A-Z_][A-Z0-9_]*)$", self.text, re.M))
        self.assertEqual(env_secrets(self.cfg) - passed, set())
        self.assertIn("HOOKLINE_PG_PASSWORD", passed)

    def test_config_uses_the_postgres_service_and_the_volume(self):
        self.assertEqual(self.cfg["listen"]["host"], "0.0.0.0")
        url = self.cfg["store"]["url"]
        self.assertTrue(url.startswith("postgresql://hookline@postgres:5432/"), url)
        self.assertNotIn(":" + "@", url)
        self.assertEqual(self.cfg["store"]["password"], "env:HOOKLINE_PG_PASSWORD")
        self.assertIn("POSTGRES_PASSWORD: ${HOOKLINE_PG_PASSWORD", self.text)
        self.assertTrue(self.cfg["audit"]["jsonl_path"].startswith("/var/lib/hookline/"))
        self.assertIn("hookline-data:/var/lib/hookline", self.text)

    def test_config_passes_check_against_a_real_postgresql(self):
        if not (PG_URL and PG_PASSFILE):
            self.skipTest("this run has no PostgreSQL (scripts/test.sh starts one)")
        db = pg_create_database()
        self.addCleanup(pg_drop_database, db)
        url, passfile = _pg_url(db), PG_PASSFILE
        tmp = make_tmpdir()
        self.addCleanup(shutil.rmtree, tmp, True)
        shutil.copytree(os.path.join(REPO, "conf", "rules"), os.path.join(tmp, "rules"))
        cfg = json.loads(json.dumps(self.cfg))
        cfg["store"] = {"url": url, "password": "file:" + passfile}
        cfg["audit"]["jsonl_path"] = os.path.join(tmp, "audit.jsonl")
        os.makedirs(os.path.join(tmp, "container"))
        path = os.path.join(tmp, "container", "hookline.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = {name: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" if "CRM" in name
               else "test-secret-%s-0123456789" % name.lower()
               for name in env_secrets(self.cfg)}
        r = run_cli(["check", "-c", path], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("schema", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()

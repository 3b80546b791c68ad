"""What only the PostgreSQL store has, with the real binary and a real PostgreSQL: a
password in store.url is refused without being repeated; the store password never
appears in any output; `hookline check` connects and reports the schema version; a
database starts empty and is migrated by the first serve (two starting at once agree);
PostgreSQL stopped and started again under load: every event answered 2xx is stored,
webhooks get 503 + Retry-After meanwhile, /readyz says why, and hookline recovers
without a restart; a database at schema 1 (the previous schema, with rows in it) is
migrated to this build's by the first serve, its rows intact. Runs on PostgreSQL runs
only (HOOKLINE_TEST_STORE=pg); the restart test starts a PostgreSQL server of its own
with scripts/pg.sh.
"""
import glob
import hashlib
import json
import os
import re
import subprocess
import threading
import time
import unittest
import urllib.parse

from hookline_harness import (
    PG_PASSFILE,
    PG_URL,
    STORE_BACKEND,
    HooklineServer,
    make_tmpdir,
    pg_create_database,
    pg_drop_database,
    pg_psql,
    pg_query,
    run_cli,
    start_server,
    store_secrets,
    write_config,
)

REPO = os.environ.get("HOOKLINE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
CT = {"Content-Type": "application/json"}
SOURCES = {"zd": {"verify": {"scheme": "none", "insecure": True}}}

pg_only = unittest.skipUnless(STORE_BACKEND == "pg",
                              "PostgreSQL only: run with HOOKLINE_TEST_STORE=pg")


def db_url(dbname, base=None):
    u = urllib.parse.urlsplit(base or PG_URL)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, ""))


def with_password(url, password):
    u = urllib.parse.urlsplit(url)
    netloc = "%s:%s@%s:%d" % (u.username, password, u.hostname, u.port)
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, ""))


@pg_only
class PgConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = make_tmpdir()
        self.db = pg_create_database()
        self.addCleanup(pg_drop_database, self.db)

    def check(self, store):
        path = write_config(self.tmp, {"store": store, "sources": SOURCES})
        return run_cli(["check", "-c", path])

    def test_password_in_url_is_refused_and_never_repeated(self):
        secret = "Sup3rSecretPw"
        for url in (with_password(db_url(self.db), secret),
                    db_url(self.db) + "?password=" + secret):
            with self.subTest(url=url.replace(secret, "***")):
                r = self.check({"url": url})
                self.assertEqual(r.returncode, 1, r)
                self.assertIn("store.url", r.stderr)
                self.assertIn("must not hold a password", r.stderr)
                self.assertNotIn(secret, r.stdout + r.stderr)
                # serve refuses it the same way, before connecting
                path = write_config(self.tmp, {"store": {"url": url}, "sources": SOURCES})
                s = run_cli(["serve", "-c", path], timeout=15)
                self.assertNotEqual(s.returncode, 0)
                self.assertNotIn(secret, s.stdout + s.stderr)

    def test_check_reports_schema_version_and_migration_from_empty(self):
        store = {"url": db_url(self.db), "password": "file:" + PG_PASSFILE}
        r = self.check(store)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"store: connected, schema version 0 \(this build: (\d+);")
        build = int(re.search(r"this build: (\d+)", r.stdout).group(1))
        self.assertEqual(pg_query(self.db, "SELECT count(*) FROM pg_tables WHERE "
                                  "schemaname = 'public'"), [(0,)])
        # two instances start on the empty database at once: one migrates, both serve
        servers = [HooklineServer({"store": dict(store), "sources": SOURCES})
                   for _ in range(2)]
        for srv in servers:
            self.addCleanup(srv.cleanup)
        threads = [threading.Thread(target=srv.start) for srv in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for i, srv in enumerate(servers):
            self.assertTrue(srv.running(), srv.log_text())
            r = srv.post("zd", json.dumps({"n": i}).encode(), CT)
            self.assertEqual(r.status, 202, r)
        self.assertEqual(pg_query(self.db, "SELECT version FROM schema_version ORDER BY 1"),
                         [(v,) for v in range(1, build + 1)])
        r = self.check(store)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("store: connected, schema version %d (this build: %d)" % (build, build),
                      r.stdout)
        # both wrote one chain: verify passes
        v = servers[0].cli("audit", "verify", "-c", servers[0].config_path)
        self.assertEqual(v.returncode, 0, v.stderr)

    def test_wrong_password_fails_without_echoing_it(self):
        pw = os.path.join(self.tmp, "wrong.secret")
        with open(pw, "w") as f:
            f.write("NotThePassword42\n")
        os.chmod(pw, 0o600)
        r = self.check({"url": db_url(self.db), "password": "file:" + pw})
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("store:", r.stderr)
        self.assertIn("password authentication failed", r.stderr)
        self.assertNotIn("NotThePassword42", r.stdout + r.stderr)

    def test_password_never_in_any_output(self):
        secrets = store_secrets()
        self.assertTrue(secrets)
        srv = start_server(self, {"sources": SOURCES, "log": {"level": "debug"}})
        for i in range(5):
            self.assertEqual(srv.post("zd", json.dumps({"n": i}).encode(), CT).status, 202)
        outputs = [srv.get("/readyz").body.decode(), srv.get("/metrics").body.decode()]
        for args in (("check",), ("audit",), ("audit", "verify"), ("events", "list"),
                     ("jobs", "list")):
            r = srv.cli(*args, "-c", srv.config_path)
            self.assertEqual(r.returncode, 0, (args, r.stderr))
            outputs += [r.stdout, r.stderr]
        srv.stop()
        outputs.append(srv.log_text())
        text = "\n".join(outputs)
        for s in secrets:
            self.assertNotIn(s, text)


def pg_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return os.path.dirname(found[-1])


@pg_only
class PgRestartTest(unittest.TestCase):
    """PostgreSQL stopped and started again while webhooks keep arriving."""

    def setUp(self):
        self.pgdir = make_tmpdir("hookline-pg-")
        r = subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "start",
                            self.pgdir], capture_output=True, text=True, timeout=120)
        self.addCleanup(self.stop_pg)
        self.assertEqual(r.returncode, 0, r.stderr)
        env = dict(line.split("=", 1) for line in r.stdout.split())
        self.url = env["HOOKLINE_TEST_PG_URL"]
        self.passfile = env["HOOKLINE_TEST_PG_PASSFILE"]

    def stop_pg(self):
        subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "stop", self.pgdir],
                       capture_output=True, timeout=120)

    def pg_ctl(self, *args):
        as_server = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        r = subprocess.run(as_server + [os.path.join(pg_bindir(), "pg_ctl"), "-D",
                                        os.path.join(self.pgdir, "data"), "-w", "-t", "60"]
                           + list(args), cwd=self.pgdir, capture_output=True, text=True,
                           timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr)

    def psql(self, sql):
        """Rows (one text column) of sql on this test's own server."""
        u = urllib.parse.urlsplit(self.url)
        with open(self.passfile) as f:
            password = f.readline().strip()
        psql = os.path.join(pg_bindir(), "psql")
        r = subprocess.run([psql, "-X", "-At", "-h", u.hostname, "-p", str(u.port), "-U",
                            u.username, "-d", u.path.lstrip("/"), "-c", sql],
                           env={"PATH": os.environ.get("PATH", ""), "PGPASSWORD": password},
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def test_restart_under_load(self):
        srv = start_server(self, {"store": {"url": self.url, "password": "file:" + self.passfile},
                                  "sources": SOURCES})
        answers = []  # (n, status, retry_after)
        stop = threading.Event()

        def load():
            n = 0
            while not stop.is_set():
                try:
                    r = srv.post("zd", json.dumps({"n": n}).encode(), CT, timeout=20)
                    answers.append((n, r.status, r.headers.get("Retry-After")))
                except OSError as e:  # the connection itself: not an answer
                    answers.append((n, None, str(e)))
                n += 1
                time.sleep(0.005)

        threads = [threading.Thread(target=load) for _ in range(1)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            self.pg_ctl("stop", "-m", "fast")
            time.sleep(0.5)
            ready_down = srv.get("/readyz")
            time.sleep(1.0)
            self.pg_ctl("start", "-l", os.path.join(self.pgdir, "run", "postgres.log"),
                        "-o", "-p %d" % urllib.parse.urlsplit(self.url).port)
            # hookline reconnects by itself: wait for 202s again
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if answers and answers[-1][1] == 202 and any(a[1] == 503 for a in answers):
                    break
                time.sleep(0.1)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertTrue(srv.running(), "hookline exited")
        self.assertEqual(ready_down.status, 503, ready_down)
        self.assertRegex(ready_down.body.decode(), r"PostgreSQL|connection|server")
        statuses = [a[1] for a in answers]
        self.assertIn(503, statuses, set(statuses))
        first_503 = statuses.index(503)
        self.assertIn(202, statuses[:first_503], "no load before the restart")
        self.assertIn(202, statuses[first_503:], "no recovery after the restart: %s"
                      % set(statuses[first_503:]))
        self.assertTrue(all(a[2] for a in answers if a[1] == 503), "503 without Retry-After")
        ready = srv.get("/readyz")
        self.assertEqual(ready.status, 200, ready)
        # every event answered 2xx is stored, exactly once
        accepted = sorted(a[0] for a in answers if a[1] == 202)
        rows = self.psql("SELECT convert_from(body, 'UTF8') FROM events WHERE source = 'zd'")
        stored = sorted(json.loads(b)["n"] for b in rows)
        missing = set(accepted) - set(stored)
        self.assertFalse(missing, "answered 202 but not stored: %s" % sorted(missing)[:20])
        self.assertEqual(len(stored), len(set(stored)))
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)


def schema1_ddl():
    """Migration 1 exactly as src/store/pg/pg_schema.c ships it (a shipped migration is
    never edited): the C string literals of the first entry of pg_migrations."""
    with open(os.path.join(REPO, "src", "store", "pg", "pg_schema.c"), encoding="utf-8") as f:
        src = f.read()
    body = src[src.index("pg_migrations[] = {"):]
    first = body[:body.index('",\n')]  # the first entry ends with its first `",` line end
    # drop comments, keep the literals' contents (no escapes other than \" are used)
    first = re.sub(r"/\*.*?\*/", "", first, flags=re.S)
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', first + '"')
    return "".join(p.replace('\\"', '"') for p in parts)


OLD_BODY = b'{"old": 1}'
OLD_ID = hashlib.sha256(OLD_BODY).hexdigest()


@pg_only
class PgMigrationTest(unittest.TestCase):
    """A database at schema 1 with rows in it: the first serve of this build migrates it
    and every row survives (issue 12's migration test for PostgreSQL)."""

    def setUp(self):
        self.db = pg_create_database()
        self.addCleanup(pg_drop_database, self.db)

    def test_schema_1_with_rows_migrates_to_this_build(self):
        ddl = schema1_ddl()
        self.assertIn("CREATE TABLE events", ddl)
        self.assertIn("CREATE TABLE did_numbers", ddl)
        self.assertNotIn("instances", ddl)
        pg_psql(self.db, [], stdin=(
            "BEGIN;\n"
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ "
            "NOT NULL DEFAULT now());\n" + ddl + "\n"
            "INSERT INTO schema_version (version) VALUES (1);\n"
            "INSERT INTO events (id, source, event_id, received_at, status, content_type, "
            "headers, body, rule_version, jobs) VALUES (7, 'zd', '%s', extract(epoch FROM "
            "now()), 'accepted', 'application/json', '{}', '\\x7b7d', 'v-old', 1);\n"
            "INSERT INTO event_keys VALUES ('zd', '%s', 7, extract(epoch FROM now()));\n"
            "INSERT INTO jobs (id, event_row, source, event_id, action, method, path, body, "
            "did, order_key, state, next_attempt_at, created_at, updated_at) VALUES (3, 7, "
            "'zd', '%s', 'update_did', 'PATCH', '/v3/dids/d-1', '{}', 'd-1', 'did:d-1', "
            "'pending', 0, 1, 1);\n"
            "INSERT INTO control VALUES ('some.key', 'kept', 1);\n"
            "INSERT INTO did_numbers VALUES ('4371234567', 'd-1', 1);\n"
            "COMMIT;\n").replace("'%s'", "'" + OLD_ID + "'").encode())
        store = {"url": db_url(self.db), "password": "file:" + PG_PASSFILE}
        tmp = make_tmpdir()
        r = run_cli(["check", "-c", write_config(tmp, {"store": store, "sources": SOURCES})])
        self.assertIn("store: connected, schema version 1 (this build: ", r.stdout)
        build = int(re.search(r"this build: (\d+)", r.stdout).group(1))
        self.assertGreaterEqual(build, 2)

        srv = start_server(self, {"store": store, "sources": SOURCES,
                                  "instance": {"id": "migrator"}})
        self.assertEqual(pg_query(self.db, "SELECT version FROM schema_version ORDER BY 1"),
                         [(v,) for v in range(1, build + 1)])
        # the rows of schema 1, as they were
        self.assertEqual(pg_query(self.db, "SELECT id, event_id, status, rule_version, jobs "
                                  "FROM events"), [(7, OLD_ID, "accepted", "v-old", 1)])
        self.assertEqual(pg_query(self.db, "SELECT id, state, order_key, did, leased_by FROM "
                                  "jobs"), [(3, "pending", "did:d-1", "d-1", None)])
        self.assertEqual(pg_query(self.db, "SELECT value FROM control WHERE key = "
                                  "'some.key'"), [("kept",)])
        self.assertEqual(pg_query(self.db, "SELECT did FROM did_numbers"), [("d-1",)])
        # the old event still dedupes (its id is its body's hash); a new one is stored
        r = srv.post("zd", OLD_BODY, CT)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "duplicate", r)
        self.assertEqual(srv.count_events("zd", OLD_ID), 1)
        r = srv.post("zd", json.dumps({"n": 1}).encode(), CT)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(srv.count_events("zd"), 2)
        # schema 2's tables are there and used: this instance beats
        rows = deadline(lambda: pg_query(self.db, "SELECT id FROM instances"), 10)
        self.assertEqual(rows, [("migrator",)])
        self.assertEqual(srv.get("/readyz").json()["instance"], "migrator")
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)


def deadline(fn, timeout):
    end = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < end:
        time.sleep(0.1)
        value = fn()
    return value


if __name__ == "__main__":
    unittest.main()

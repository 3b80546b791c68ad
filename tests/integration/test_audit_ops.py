"""Audit operations with the real binary: retention prunes old records and `audit verify`
still passes from the checkpoint (and still catches tampering after it); verify names a
record whose stored column was edited beside it; the JSON Lines mirror holds every record
in seq order, survives a restart and a torn last line; `audit --follow` prints records
appended after it started; CSV is RFC 4180; the table shows whole event ids.
"""
import csv
import io
import json
import os
import signal
import subprocess
import time
import unittest

from hookline_harness import HOOKLINE_BIN, base_env, make_tmpdir, start_server

DID_A = "f10d40c7-fd0b-4d63-bb9b-27810a1a8f5c"
DID_B = "1e0c45b1-1fea-4552-b41b-ffa9f5eb44c5"

CT = {"Content-Type": "application/json"}


def post_n(srv, n, start=0):
    for i in range(start, start + n):
        r = srv.post("zd", json.dumps({"n": i, "text": 'quote " comma , line\nbreak'}).encode(), CT)
        assert r.status == 202, r


class AuditOpsTest(unittest.TestCase):
    def config(self, **audit):
        return {"audit": dict({"retention_days": 30, "jsonl_path": "mirror/audit.jsonl"}, **audit),
                "sources": {"zd": {"verify": {"scheme": "none", "insecure": True}}}}

    def mirror_lines(self, srv):
        path = os.path.join(srv.tmpdir, "mirror", "audit.jsonl")
        with open(path) as f:
            return [json.loads(line) for line in f.read().splitlines()]

    def wait_mirror(self, srv, count):
        deadline = time.monotonic() + 10
        lines = []
        while time.monotonic() < deadline:
            try:
                lines = self.mirror_lines(srv)
            except FileNotFoundError:
                lines = []
            if len(lines) >= count:
                return lines
            time.sleep(0.05)
        return lines

    def test_retention_keeps_verify_working(self):
        srv = start_server(self, self.config())
        post_n(srv, 6)
        self.assertEqual(srv.stop(), 0)
        # age the first four records past the 30-day retention (record and column alike:
        # a column that no longer matches its record stops a reading of the whole trail)
        # (the record's "time" member edited in place, as SQLite's json_set would: the
        # record is compact JSON with sorted keys, so its text stays canonical)
        old = "2020-01-01T00:00:00.000Z"
        aged = srv.query("SELECT seq, record FROM audit WHERE seq <= 4 ORDER BY seq")
        self.assertEqual([seq for seq, _ in aged], [1, 2, 3, 4])
        for seq, record in aged:
            needle = '"time":' + json.dumps(json.loads(record)["time"])
            self.assertEqual(record.count(needle), 1, record)
            srv.execute("UPDATE audit SET time = ?, record = ? WHERE seq = ?",
                        (old, record.replace(needle, '"time":"%s"' % old), seq))
        srv.start()
        recs = srv.wait_audit(lambda rs: any(r["kind"] == "audit.pruned" for r in rs))
        pruned = [r for r in recs if r["kind"] == "audit.pruned"][0]
        self.assertEqual(pruned["detail"]["through_seq"], 4)
        self.assertEqual(pruned["detail"]["deleted"], 4)
        self.assertEqual(min(r["seq"] for r in recs), 5)
        post_n(srv, 2, start=10)
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertIn("pruned by retention", v.stdout)
        self.assertEqual(srv.stop(), 0)
        # tampering after the checkpoint is still caught, naming the record
        srv.execute("UPDATE audit SET record = replace(record, '\"bytes\":', '\"bytes\":1') "
                    "WHERE seq = 6")
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 1)
        self.assertIn("seq 6", v.stderr)

    def test_inserted_record_is_caught(self):
        srv = start_server(self, self.config())
        post_n(srv, 5)
        self.assertEqual(srv.stop(), 0)
        db = srv.db(write=True)
        rows = db.execute("SELECT seq, record FROM audit ORDER BY seq").fetchall()
        # make room after seq 3 and insert a forged record that copies seq 3's links
        for seq, _ in reversed(rows):
            if seq > 3:
                db.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (seq,))
        forged = json.loads(rows[2][1])
        forged["seq"] = 4
        forged["kind"] = "job.done"
        forged["detail"] = {"action": "route_did"}
        db.execute("INSERT INTO audit (seq, time, kind, record) VALUES (4, ?, 'job.done', ?)",
                   (forged["time"], json.dumps(forged)))
        db.close()
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 1)
        self.assertIn("seq 4", v.stderr)

    def test_edited_column_is_caught(self):
        """docs/contract.md section 6: a stored column that no longer matches its record hides the
        record from the queries that select by it; `audit verify` names the record and
        the column although the record's own text and hash are untouched."""
        tmp = make_tmpdir()
        with open(os.path.join(tmp, "main.lua"), "w") as f:
            f.write("function on_event(ev)\n"
                    "  didww.unroute_did{did = ev.body.did}\n"
                    "end\n")
        srv = start_server(self, dict(self.config(), rules={"script": "main.lua"}), tmpdir=tmp)
        for did in (DID_A, DID_B):
            r = srv.post("zd", json.dumps({"did": did}).encode(), CT)
            self.assertEqual(r.status, 202, r)
        self.assertEqual(srv.stop(), 0)
        queued = srv.query("SELECT seq FROM audit WHERE kind = 'job.queued' AND did = ?",
                           (DID_A,))
        self.assertEqual(len(queued), 1)
        seq = queued[0][0]
        before = [x["seq"] for x in srv.audit("--did", DID_A)[0]]
        self.assertIn(seq, before)
        v = srv.cli("audit", "verify", "-c", srv.config_path)
        self.assertEqual(v.returncode, 0, v.stderr)

        for column, value in (("did", DID_B), ("job_id", 2), ("kind", "job.done"),
                              ("number", "4371234567"), ("time", "2020-01-01T00:00:00.000Z")):
            with self.subTest(column=column):
                db = srv.db(write=True)
                (original,), = db.execute("SELECT %s FROM audit WHERE seq = ?" % column,
                                          (seq,)).fetchall()
                db.execute("UPDATE audit SET %s = ? WHERE seq = ?" % column, (value, seq))
                db.close()
                if column == "did":  # the record is gone from its DID's story
                    self.assertNotIn(seq, [x["seq"] for x in srv.audit("--did", DID_A)[0]])
                # a listing still shows the tampered trail (an operator must see it)
                self.assertIn(seq, [x["seq"] for x in srv.audit()[0]])
                v = srv.cli("audit", "verify", "-c", srv.config_path)
                self.assertEqual(v.returncode, 1, v)
                self.assertRegex(v.stderr, r"\bseq %d\b" % seq)
                self.assertIn("'%s'" % column, v.stderr)
                self.assertEqual(len(v.stderr.strip().splitlines()), 1, v.stderr)
                db = srv.db(write=True)
                db.execute("UPDATE audit SET %s = ? WHERE seq = ?" % column, (original, seq))
                db.close()
                v = srv.cli("audit", "verify", "-c", srv.config_path)
                self.assertEqual(v.returncode, 0, v.stderr)
        self.assertEqual([x["seq"] for x in srv.audit("--did", DID_A)[0]], before)

    def test_mirror_in_order_and_restart(self):
        srv = start_server(self, self.config())
        post_n(srv, 20)
        lines = self.wait_mirror(srv, 20)
        self.assertEqual([x["seq"] for x in lines], list(range(1, 21)))
        stored, _ = srv.audit()
        self.assertEqual(lines, stored)
        self.assertEqual(srv.stop(), 0)
        # a torn last line (crash mid-write) is cut, then the mirror continues
        path = os.path.join(srv.tmpdir, "mirror", "audit.jsonl")
        with open(path, "a") as f:
            f.write('{"seq": 21, "kind": "event.rec')
        srv.start()
        post_n(srv, 3, start=100)
        lines = self.wait_mirror(srv, 23)
        self.assertEqual([x["seq"] for x in lines], list(range(1, 24)))
        # records written by another process (the CLI) reach the mirror too
        jobs_resume = srv.cli("jobs", "-c", srv.config_path, "resume")
        self.assertEqual(jobs_resume.returncode, 0, jobs_resume.stderr)
        self.assertEqual(srv.stop(), 0)
        self.assertEqual(self.mirror_lines(srv), srv.audit()[0])

    def test_follow_csv_and_table(self):
        srv = start_server(self, {"sources": {"zd": {"verify": {"scheme": "none",
                                                                "insecure": True}}}})
        post_n(srv, 2)
        proc = subprocess.Popen([HOOKLINE_BIN, "audit", "-c", srv.config_path, "--format", "json",
                                 "--follow", "--kind", "event.received"],
                                env=base_env(srv.env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        def stop_follow():
            proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        self.addCleanup(stop_follow)
        first = [json.loads(proc.stdout.readline()) for _ in range(2)]
        self.assertEqual([r["seq"] for r in first], [1, 2])
        post_n(srv, 1, start=50)
        line = proc.stdout.readline()  # arrives while --follow runs
        self.assertEqual(json.loads(line)["kind"], "event.received")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=10), 0)

        raw = subprocess.run([HOOKLINE_BIN, "audit", "-c", srv.config_path, "--format", "csv"],
                             env=base_env(srv.env), capture_output=True, timeout=30)
        self.assertEqual(raw.returncode, 0, raw.stderr)
        self.assertTrue(raw.stdout.endswith(b"\r\n"))  # RFC 4180 line ends
        rows = list(csv.reader(io.StringIO(raw.stdout.decode(), newline="")))
        self.assertEqual(rows[0], ["seq", "time", "kind", "source", "event_id", "did", "number",
                                   "outcome"])
        self.assertEqual(len(rows), 4)
        t = srv.cli("audit", "-c", srv.config_path, "--format", "table")
        self.assertEqual(t.returncode, 0, t.stderr)
        ids = {row[4] for row in rows[1:]}  # whole event ids, as the CSV has them
        self.assertTrue(all(line.split()[-1] in ids for line in t.stdout.splitlines()[1:]),
                        t.stdout)
        self.assertEqual(len(t.stdout.splitlines()), 4)


if __name__ == "__main__":
    unittest.main()

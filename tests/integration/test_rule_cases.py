"""Rule test cases and shadow replay, with the real binary (issue 16).

Covers: `hookline rule-test --cases` (passing cases, a failing plan with a readable
diff, expected errors, form bodies, headers, malformed files named by file and case,
the shipped conf/rules cases); `hookline check` and reloads (SIGHUP, /v1/rules/reload)
running rules.cases and refusing a rule whose cases fail, the old rule staying in force;
the plan stored with each event; `hookline rule-test --replay` beside a running serve:
the rule in force against itself (nothing changed), a candidate that changes some
decisions, one that fails on some events (counted failed, the rest compared), the
--since/--source/--limit filters, the JSON format, changed rules.data said in the
output, events stored before plans were kept (schema migration, plans rebuilt from the
jobs rows), and that replay writes nothing. Runs on SQLite and PostgreSQL.
"""
import json
import os
import signal
import time
import unittest

from hookline_harness import STORE_BACKEND, make_tmpdir, run_cli, start_server, write_config

SOURCE_DIR = os.environ.get("HOOKLINE_SOURCE_DIR",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

ADMIN = "admin-token-for-rule-cases-0123456789"
TRUNK_A = "d9b6ec47-0b72-452b-b4b4-23dd9d5be7e6"
TRUNK_B = "ca7da6d0-aa0b-447d-8fc0-1bc58b51298c"
TRUNK_C = "5026af46-b31f-4ca5-b5ef-4a1488a55898"

# Routes the event's phone to its team's trunk (rules.data teams), reads a header,
# skips "ping" events and takes form bodies too.
RULE = """function on_event(ev)
  local b = ev.body
  if b.kind == "ping" then skip("ping") end
  local team = ev.headers["x-team"] or b.team
  local trunk = data.teams[team]
  if not trunk then error("no trunk for team " .. tostring(team)) end
  didww.route_did{number = b.phone, trunk = trunk}
end
"""
TEAMS = {"a": TRUNK_A, "b": TRUNK_B}


def route(number, trunk):
    return {"action": "route_did", "method": "PATCH", "path": "/v3/dids/number:" + number,
            "body": {"data": {"type": "dids", "id": "number:" + number, "relationships": {
                "voice_in_trunk": {"data": {"type": "voice_in_trunks", "id": trunk}},
                "voice_in_trunk_group": {"data": None}}}}}


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text if isinstance(text, str) else json.dumps(text, indent=2))
    return path


class RuleCasesTest(unittest.TestCase):
    """rule-test --cases: no store, no server."""

    def setUp(self):
        self.tmp = make_tmpdir("hookline-cases-")
        write(os.path.join(self.tmp, "main.lua"), RULE)
        write(os.path.join(self.tmp, "teams.json"), TEAMS)
        self.cfg = write_config(self.tmp, {
            "store": {"url": "sqlite:events.db"},
            "rules": {"script": "main.lua", "data": {"teams": "teams.json"}},
            "sources": {"zd": {"verify": {"scheme": "none", "insecure": True}},
                        "crm": {"verify": {"scheme": "standard-webhooks",
                                           "secret": "env:CRM_SECRET"}}}})

    def cases(self, cases, name="cases.json"):
        path = write(os.path.join(self.tmp, name),
                     cases if isinstance(cases, str) else json.dumps(cases))
        return run_cli(["rule-test", "-c", self.cfg, "--cases", path])

    def test_passing_cases_form_bodies_headers_and_expected_errors(self):
        r = self.cases([
            {"name": "team a", "source": "zd", "body": {"phone": "+43 720 0001", "team": "a"},
             "expect": [route("437200001", TRUNK_A)]},
            {"name": "header picks the team", "source": "zd", "headers": {"X-Team": "b"},
             "body": {"phone": "+437200002", "team": "a"},
             "expect": [route("437200002", TRUNK_B)]},
            {"name": "form body", "source": "zd",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"},
             "raw": "phone=%2B437200003&team=b", "expect": [route("437200003", TRUNK_B)]},
            {"name": "ping is skipped", "source": "zd", "body": {"kind": "ping"}, "expect": []},
            {"name": "unknown team fails", "source": "zd", "body": {"phone": "+4372", "team": "z"},
             "expect_error": "no trunk for team z"},
            {"name": "standard-webhooks source with its id header", "source": "crm",
             "headers": {"webhook-id": "msg_1"}, "body": {"phone": "+437200004", "team": "a"},
             "expect": [route("437200004", TRUNK_A)]},
        ])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines, ["PASS team a", "PASS header picks the team", "PASS form body",
                                 "PASS ping is skipped", "PASS unknown team fails",
                                 "PASS standard-webhooks source with its id header",
                                 "6 passed, 0 failed"])

    def test_failing_cases_show_why_and_a_diff(self):
        r = self.cases([
            {"name": "good", "source": "zd", "body": {"phone": "+437200001", "team": "a"},
             "expect": [route("437200001", TRUNK_A)]},
            {"name": "wrong trunk", "source": "zd", "body": {"phone": "+437200001", "team": "a"},
             "expect": [route("437200001", TRUNK_C)]},
            {"name": "error expected, plan made", "source": "zd",
             "body": {"phone": "+437200001", "team": "a"}, "expect_error": "no trunk"},
            {"name": "other error", "source": "zd", "body": {"phone": "+4372", "team": "z"},
             "expect_error": "memory limit"},
            {"name": "plan expected, rule fails", "source": "zd",
             "body": {"phone": "+4372", "team": "z"}, "expect": []},
            {"name": "skipped, plan expected", "source": "zd", "body": {"kind": "ping"},
             "expect": [route("437200001", TRUNK_A)]},
        ])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = r.stdout
        self.assertTrue(out.endswith("1 passed, 5 failed\n"), out)
        self.assertIn("PASS good\n", out)
        self.assertIn("FAIL wrong trunk: plan differs (- expected, + actual)\n", out)
        # the diff: the differing trunk id as "-" (expected) and "+" (actual), the rest common
        self.assertRegex(out, r'\n    - +"id": "%s",\n    \+ +"id": "%s",\n' % (TRUNK_C, TRUNK_A))
        self.assertIn('          "method": "PATCH",', out)
        self.assertIn('FAIL error expected, plan made: expected an error containing "no trunk"; '
                      'the rule planned 1 request\n', out)
        self.assertRegex(out, r'FAIL other error: the error "main.lua:\d+: no trunk for team z" '
                              r'does not contain "memory limit"')
        self.assertRegex(out, r"FAIL plan expected, rule fails: main.lua:\d+: no trunk for team z")
        self.assertIn("FAIL skipped, plan expected: the rule skipped (ping); expected 1 request",
                      out)

    def test_malformed_files_are_named_by_file_and_case(self):
        bad = [
            ("{", r"cases.json:\d+:\d+: "),
            ('{"name": "x"}', r"cases.json: must be a JSON array of cases"),
            ([{"name": "ok", "source": "zd", "body": {}, "expect": []}, {"source": "zd"}],
             r'cases.json: case 2: "name" must be a non-empty string'),
            ([{"name": "both", "source": "zd", "body": {}, "raw": "", "expect": []}],
             r'cases.json: case 1 \(both\): give exactly one of "body" \(JSON\) and "raw"'),
            ([{"name": "typo", "source": "zd", "body": {}, "expct": []}],
             r'cases.json: case 1 \(typo\): unknown key "expct"'),
            ([{"name": "none", "source": "zd", "body": {}}],
             r'case 1 \(none\): give exactly one of "expect" \(a plan\) and "expect_error"'),
            ([{"name": "plan", "source": "zd", "body": {}, "expect": {"action": "x"}}],
             r'case 1 \(plan\): "expect" must be an array'),
            ([{"name": "hdr", "source": "zd", "headers": {"X": 1}, "body": {}, "expect": []}],
             r'case 1 \(hdr\): header "X" must have a string value'),
        ]
        for cases, message in bad:
            with self.subTest(message=message):
                r = self.cases(cases)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertEqual(r.stdout, "")  # nothing ran
                self.assertRegex(r.stderr, message)
        r = run_cli(["rule-test", "-c", self.cfg, "--cases", os.path.join(self.tmp, "no.json")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("no.json", r.stderr)

    def test_unknown_source_fails_the_case(self):
        r = self.cases([{"name": "x", "source": "nope", "body": {}, "expect": []}])
        self.assertEqual(r.returncode, 1)
        self.assertIn("FAIL x: no source named nope in the config", r.stdout)

    def test_usage_errors(self):
        for args in (["--cases", "c.json", "--replay"], ["--cases", "c.json", "x.json"],
                     ["--replay", "--format", "xml"], ["--replay", "--limit", "0"],
                     ["--rule", "x.lua"]):
            with self.subTest(args=args):
                r = run_cli(["rule-test", "-c", self.cfg] + args)
                self.assertEqual(r.returncode, 2, r.stderr)

    def test_shipped_example_cases_pass(self):
        conf = os.path.join(SOURCE_DIR, "conf", "hookline.json")
        cases = os.path.join(SOURCE_DIR, "conf", "rules", "main.cases.json")
        r = run_cli(["rule-test", "-c", conf, "--cases", cases])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(cases, encoding="utf-8") as f:
            n = len(json.load(f))
        self.assertTrue(r.stdout.endswith("%d passed, 0 failed\n" % n), r.stdout)

    def test_check_runs_rules_cases(self):
        cases = write(os.path.join(self.tmp, "main.cases.json"), [
            {"name": "team a", "source": "zd", "body": {"phone": "+437200001", "team": "a"},
             "expect": [route("437200001", TRUNK_A)]}])
        with open(self.cfg, encoding="utf-8") as f:
            cfg = json.load(f)
        cfg["rules"]["cases"] = "main.cases.json"
        path = write_config(self.tmp, cfg, "with-cases.json")
        r = run_cli(["check", "-c", path], env={"CRM_SECRET": "whsec_dGVzdHNlY3JldA=="})
        self.assertEqual(r.returncode, 0, r.stderr)
        write(os.path.join(self.tmp, "teams.json"), {"a": TRUNK_C, "b": TRUNK_B})
        r = run_cli(["check", "-c", path], env={"CRM_SECRET": "whsec_dGVzdHNlY3JldA=="})
        self.assertEqual(r.returncode, 1)
        self.assertIn("main.cases.json: 1 of 1 cases fail: team a", r.stderr)
        os.unlink(cases)
        r = run_cli(["check", "-c", path], env={"CRM_SECRET": "whsec_dGVzdHNlY3JldA=="})
        self.assertEqual(r.returncode, 1)
        self.assertIn("rules.cases", r.stderr)


class ServedRulesTest(unittest.TestCase):
    """Reload gate and replay beside a running serve (both store backends)."""

    def start(self, cases=None):
        tmp = make_tmpdir("hookline-replay-")
        self.tmp = tmp
        self.rule = write(os.path.join(tmp, "main.lua"), RULE)
        self.teams = write(os.path.join(tmp, "teams.json"), TEAMS)
        rules = {"script": "main.lua", "data": {"teams": "teams.json"}}
        if cases is not None:
            write(os.path.join(tmp, "main.cases.json"), cases)
            rules["cases"] = "main.cases.json"
        cfg = {"rules": rules, "admin": {"token": "env:HL_ADMIN"},
               "sources": {"zd": {"verify": {"scheme": "none", "insecure": True}},
                           "fd": {"verify": {"scheme": "none", "insecure": True}}}}
        self.srv = start_server(self, cfg, env={"HL_ADMIN": ADMIN}, tmpdir=tmp)
        return self.srv

    def post(self, source, body):
        r = self.srv.post(source, json.dumps(body).encode(), {"Content-Type": "application/json"})
        self.assertEqual(r.status, 202, r)
        return r.json()

    def reload(self):
        return self.srv.request("POST", "/v1/rules/reload", b"",
                                {"Authorization": "Bearer " + ADMIN})

    def replay(self, *args, ok=True):
        r = self.srv.cli("rule-test", "-c", self.srv.config_path, "--replay", *args)
        if ok:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def replay_json(self, *args):
        return json.loads(self.replay("--format", "json", *args).stdout)

    # ----- rules.cases on reload -----

    def test_reload_refuses_a_rule_whose_cases_fail(self):
        srv = self.start(cases=[
            {"name": "team a routes to trunk A", "source": "zd",
             "body": {"phone": "+437200001", "team": "a"},
             "expect": [route("437200001", TRUNK_A)]},
            {"name": "unknown team fails", "source": "zd", "body": {"phone": "+4372", "team": "z"},
             "expect_error": "no trunk"}])
        # a rule that still passes its cases reloads
        write(self.rule, RULE.replace('skip("ping")', 'skip("ping!")'))
        self.assertEqual(self.reload().status, 200)
        # one that breaks a case is refused, naming the case; the old rule stays
        write(self.rule, RULE.replace("local trunk = data.teams[team]",
                                      'local trunk = "%s"' % TRUNK_C))
        r = self.reload()
        self.assertEqual(r.status, 422, r)
        detail = r.json()["detail"]
        self.assertIn("2 of 2 cases fail", detail)
        self.assertIn("team a routes to trunk A, unknown team fails", detail)
        self.post("zd", {"phone": "+437200009", "team": "a"})
        body = srv.query("SELECT body FROM jobs ORDER BY id DESC LIMIT 1")[0][0]
        self.assertIn(TRUNK_A, body)
        # the same through SIGHUP, and a data change breaking a case
        write(self.rule, RULE)
        write(self.teams, {"a": TRUNK_B, "b": TRUNK_B})
        srv.signal(signal.SIGHUP)
        recs = srv.wait_audit(lambda rs: len(rs) >= 3, "--kind", "rules.*")
        self.assertEqual([x["kind"] for x in recs],
                         ["rules.reloaded", "rules.reload_failed", "rules.reload_failed"])
        self.assertIn("team a routes to trunk A", recs[2]["detail"]["reason"])
        self.assertEqual(recs[2]["detail"]["trigger"], "SIGHUP")
        self.post("zd", {"phone": "+437200010", "team": "a"})
        body = srv.query("SELECT body FROM jobs ORDER BY id DESC LIMIT 1")[0][0]
        self.assertIn(TRUNK_A, body)
        # fixed cases file: the reload goes through
        write(os.path.join(self.tmp, "main.cases.json"), [
            {"name": "team a routes to trunk B", "source": "zd",
             "body": {"phone": "+437200001", "team": "a"},
             "expect": [route("437200001", TRUNK_B)]}])
        self.assertEqual(self.reload().status, 200)

    # ----- the plan stored with each event -----

    def test_plan_is_stored_with_each_event(self):
        srv = self.start()
        self.post("zd", {"phone": "+437200001", "team": "a"})
        self.post("zd", {"kind": "ping"})
        self.assertEqual(self.post("zd", {"phone": "+4372", "team": "z"})["status"], "rule_failed")
        plans = [r[0] for r in srv.query("SELECT plan FROM events ORDER BY id")]
        self.assertEqual(json.loads(plans[0]), [route("437200001", TRUNK_A)])
        self.assertEqual(json.loads(plans[1]), [])
        self.assertRegex(json.loads(plans[2])["error"], r"main.lua:\d+: no trunk for team z")

    # ----- replay -----

    def load_events(self):
        """6 zd events (a, b, a, ping, b, a) and 2 fd events (b, a)."""
        ids = []
        for body in ({"phone": "+437200001", "team": "a"}, {"phone": "+437200002", "team": "b"},
                     {"phone": "+437200003", "team": "a"}, {"kind": "ping"},
                     {"phone": "+437200005", "team": "b"}, {"phone": "+437200006", "team": "a"}):
            ids.append(self.post("zd", body)["event_id"])
        for body in ({"phone": "+437200007", "team": "b"}, {"phone": "+437200008", "team": "a"}):
            ids.append(self.post("fd", body)["event_id"])
        return ids

    def totals(self):
        return (self.srv.query("SELECT count(*) FROM audit")[0][0],
                self.srv.query("SELECT count(*) FROM jobs")[0][0],
                self.srv.query("SELECT count(*) FROM events")[0][0])

    def test_replay_beside_serve(self):
        self.start()
        ids = self.load_events()
        before = self.totals()

        # the rule in force against itself: nothing changed
        r = self.replay()
        self.assertIn("events: 8, unchanged: 8, changed: 0, failed: 0", r.stdout)
        self.assertRegex(r.stdout, r"route_did\s+7 -> 7")
        self.assertIn("reads rules.data as it is now", r.stdout)
        doc = self.replay_json()
        self.assertEqual((doc["events"], doc["unchanged"], doc["changed"], doc["failed"]),
                         (8, 8, 0, 0))
        self.assertEqual(doc["changes"], [])

        # a candidate sending team b to trunk C changes the 3 team-b events
        cand = write(os.path.join(self.tmp, "candidate.lua"),
                     RULE.replace("local trunk = data.teams[team]",
                                  'local trunk = team == "b" and "%s" or data.teams[team]'
                                  % TRUNK_C))
        doc = self.replay_json("--rule", cand)
        self.assertEqual((doc["events"], doc["unchanged"], doc["changed"], doc["failed"]),
                         (8, 5, 3, 0))
        self.assertEqual([c["event_id"] for c in doc["changes"]], [ids[1], ids[4], ids[6]])
        first = doc["changes"][0]
        self.assertEqual(first["source"], "zd")
        self.assertEqual(first["before"], [route("437200002", TRUNK_B)])
        self.assertEqual(first["after"], [route("437200002", TRUNK_C)])
        r = self.replay("--rule", cand)
        self.assertIn("events: 8, unchanged: 5, changed: 3, failed: 0", r.stdout)
        self.assertIn("changed: zd %s" % ids[1], r.stdout)
        self.assertIn(TRUNK_C, r.stdout)

        # a candidate failing on team a: counted failed, the rest compared
        failing = write(os.path.join(self.tmp, "failing.lua"),
                        RULE.replace("local b = ev.body",
                                     'local b = ev.body\n  if b.team == "a" then '
                                     'error("team a retired") end'))
        doc = self.replay_json("--rule", failing)
        self.assertEqual((doc["events"], doc["unchanged"], doc["changed"], doc["failed"]),
                         (8, 4, 0, 4))
        self.assertEqual(sorted(f["event_id"] for f in doc["failures"]),
                         sorted([ids[0], ids[2], ids[5], ids[7]]))
        self.assertRegex(doc["failures"][0]["error"], r"failing.lua:\d+: team a retired")
        r = self.replay("--rule", failing)
        self.assertRegex(r.stdout, r"failed: zd %s \(row \d+\): \S*failing.lua:\d+: team a retired"
                         % ids[0])

        # filters: --source, --limit, --since
        doc = self.replay_json("--rule", cand, "--source", "fd")
        self.assertEqual((doc["events"], doc["changed"]), (2, 1))
        self.assertEqual(doc["changes"][0]["event_id"], ids[6])
        doc = self.replay_json("--rule", cand, "--limit", "2")
        self.assertEqual((doc["events"], doc["changed"]), (2, 1))
        self.srv.execute("UPDATE events SET received_at = received_at - 3 * 86400 WHERE id <= "
                         "(SELECT min(id) + 2 FROM events)")
        doc = self.replay_json("--rule", cand, "--since", "1d")
        self.assertEqual((doc["events"], doc["changed"]), (5, 2))
        r = self.replay("--source", "nope", ok=False)
        self.assertEqual(r.returncode, 1)
        r = self.replay("--since", "yesterday", ok=False)
        self.assertEqual(r.returncode, 2)

        # replay sends nothing and writes nothing, and serve keeps taking events
        self.assertEqual(self.totals(), before)
        self.post("zd", {"phone": "+437200011", "team": "a"})
        self.assertEqual(self.replay_json()["events"], 9)

    def test_replay_says_when_rules_data_changed(self):
        self.start()
        self.load_events()
        write(self.teams, {"a": TRUNK_A, "b": TRUNK_C})
        r = self.replay()
        self.assertIn("events: 8, unchanged: 5, changed: 3, failed: 0", r.stdout)
        self.assertIn("note: 8 events were planned by another rule version than the one in force",
                      r.stdout)
        doc = self.replay_json()
        self.assertEqual(doc["other_rule_version"], 8)
        self.assertTrue(doc["data_read_as_now"])

    def test_events_stored_before_plans_were_kept(self):
        """A store migrated from the schema before the plan column: each event's plan is
        rebuilt from its jobs rows by the migration, and replay says so."""
        srv = self.start()
        ids = self.load_events()
        self.assertEqual(self.post("zd", {"phone": "+4372", "team": "z"})["status"],
                         "rule_failed")
        srv.stop()
        # Back to the schema before the plan column, as a store of an older build.
        # a job body that is not JSON (never written by hookline) must not stop the migration
        srv.execute("UPDATE jobs SET body = 'not json' WHERE id = (SELECT min(id) FROM jobs)")
        srv.execute("DROP TABLE event_plans_from_jobs")
        srv.execute("ALTER TABLE events DROP COLUMN plan")
        if STORE_BACKEND == "sqlite":
            srv.execute("PRAGMA user_version = 9")
        else:
            # PostgreSQL schema 3 added the plan (2 is the several-instances tables)
            srv.execute("DELETE FROM schema_version WHERE version >= 3")
        srv.start()  # migrates
        self.assertEqual(srv.query("SELECT count(*) FROM events WHERE plan IS NULL")[0][0], 9)
        r = self.replay()
        self.assertIn("events: 9, unchanged: 7, changed: 1, failed: 1", r.stdout)
        self.assertIn("changed: zd %s" % ids[0], r.stdout)
        self.assertIn("note: 7 events were stored before plans were kept: their stored plan is "
                      "rebuilt from their jobs rows", r.stdout)
        self.assertIn("note: 2 events have no stored plan", r.stdout)
        cand = write(os.path.join(self.tmp, "candidate.lua"),
                     RULE.replace("local trunk = data.teams[team]",
                                  'local trunk = team == "b" and "%s" or data.teams[team]'
                                  % TRUNK_C))
        doc = self.replay_json("--rule", cand)
        self.assertEqual(doc["plans_from_jobs"], 7)
        self.assertEqual([c["event_id"] for c in doc["changes"]], [ids[0], ids[1], ids[4], ids[6]])
        self.assertTrue(all(c["before_from_jobs"] for c in doc["changes"]))
        self.assertEqual(doc["changes"][0]["before"][0]["body"], "not json")
        self.assertEqual(doc["changes"][1]["before"], [route("437200002", TRUNK_B)])
        # new events get their plan stored again
        self.post("zd", {"phone": "+437200012", "team": "a"})
        self.assertEqual(srv.query("SELECT count(*) FROM events WHERE plan IS NULL")[0][0], 9)


if __name__ == "__main__":
    unittest.main()

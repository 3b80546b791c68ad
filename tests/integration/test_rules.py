"""Integration tests of the Lua rule engine through the real `hookline` binary.

- The example rules (conf/rules/main.lua + teams.json wired by conf/hookline.json):
  `hookline rule-test` on every fixture in tests/fixtures/ prints exactly
  tests/fixtures/expected/<name>.json (values and key order), with the legacy
  relationship names under api_version 2021-04-19.
- Rule errors: bad didww.* arguments and runtime errors exit 1 with
  "<script>:<line>: ..."; `hookline check` reports syntax errors and a missing on_event.
- Through `hookline serve`: planned jobs are stored with the event exactly as rule-test
  prints them, with the audit records event.received, rule.decided, job.queued; failing
  and skipping rules; hot reload on SIGHUP (and a broken reload keeping the last good
  rule); the sandbox's instruction limit and per-event globals.

Run: HOOKLINE_BIN=build/hookline python3 tests/integration/test_rules.py -v
"""

import json
import os
import re
import shutil
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hookline_harness import (  # noqa: E402
    HooklineServer,
    make_tmpdir,
    run_cli,
    write_config,
)

SOURCE_DIR = os.environ.get("HOOKLINE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CONF = os.path.join(SOURCE_DIR, "conf", "hookline.json")
FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures")
EXPECTED = os.path.join(FIXTURES, "expected")

FORM = "Content-Type: application/x-www-form-urlencoded"

# Dummy values for every secret conf/hookline.json names (never a real credential).
CONF_ENV = {
    "ZENDESK_SECRET": "zendesk-test-secret",
    "HUBSPOT_SECRET": "hubspot-test-secret",
    "ZAPIER_TOKEN": "zapier-test-token",
    "FRESHDESK_PASSWORD": "freshdesk-test-password",
    "CRM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "HOOKLINE_ADMIN_TOKEN": "admin-test-token-0123456789",
    "DIDWW_API_KEY": "didww-test-key",
}

# name -> (source, fixture file, extra rule-test headers)
EXAMPLES = {
    "zendesk_ticket_urgent": ("zendesk", "zendesk_ticket_urgent.json", []),
    "zendesk_ticket_normal": ("zendesk", "zendesk_ticket_normal.json", []),
    "hubspot_deal_stage": ("hubspot", "hubspot_deal_stage.json", []),
    "zapier_oncall": ("zapier", "zapier_oncall.form", [FORM]),
    "freshdesk_agent_offline": ("freshdesk", "freshdesk_agent_offline.json", []),
    "crm_account_team_assigned": ("crm", "crm_account_team_assigned.json",
                                  ["webhook-id: msg_2pQx7f3LkT9vYbN4"]),
}

# Loopback port 9 (discard): nothing a test plans can ever leave the machine.
LOOPBACK_DIDWW = "http://127.0.0.1:9/v3"

UUID_A = "24a2af65-8bc1-490e-8de4-b0402b6cbfec"
UUID_B = "ae000e9d-eb73-47e3-8cf1-cf9a2eeda214"
UUID_DID = "49adbf8f-f0ec-4b84-becd-8f128c179125"


class Obj(list):
    """A JSON object as its (key, value) pairs, in document order."""


def ordered(text):
    """Parses JSON keeping every object's key order (objects become Obj)."""
    return json.loads(text, object_pairs_hook=Obj)


def keys(obj):
    return [k for k, _ in obj]


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def line_of(text, needle):
    """1-based line of the first occurrence of needle in text."""
    return text.count("\n", 0, text.index(needle)) + 1


def rule_test(config, source, fixture, headers=(), env=None):
    args = ["rule-test", "-c", config, "--source", source]
    for h in headers:
        args += ["--header", h]
    return run_cli(args + [fixture], env=CONF_ENV if env is None else env)


class RuleAssertions:
    def assertIdentifiers(self, ref, where):
        """A resource linkage: null, one identifier or a list of them, each type, id."""
        for ident in (ref if isinstance(ref, list) and not isinstance(ref, Obj) else [ref]):
            if ident is not None:
                self.assertIsInstance(ident, Obj, where)
                self.assertEqual(keys(ident), ["type", "id"], where)

    def assertDidwwBodyOrder(self, body, where=""):
        """The seed document's key order: data -> type, id, attributes, relationships."""
        self.assertEqual(keys(body), ["data"], where)
        data = dict(body)["data"]
        if not isinstance(data, Obj):  # POST/DELETE to a relationship link
            self.assertIdentifiers(data, where)
            return
        members = keys(data)
        self.assertEqual(members[:2], ["type", "id"], where)
        self.assertIn(members[2:], (["attributes"], ["relationships"],
                                    ["attributes", "relationships"]), where)
        for _, rel in dict(data).get("relationships", Obj()):
            self.assertEqual(keys(rel), ["data"], where)
            self.assertIdentifiers(dict(rel)["data"], where)

    def assertRuleOutput(self, stdout, expected_text, where):
        self.assertEqual(json.loads(stdout), json.loads(expected_text), where)
        got, want = ordered(stdout), ordered(expected_text)
        self.assertEqual(got, want, where + ": key order differs")
        for job in got:
            self.assertEqual(keys(job), ["action", "method", "path", "body"], where)
            self.assertDidwwBodyOrder(dict(job)["body"], where)


class ExampleRulesTest(unittest.TestCase, RuleAssertions):
    """conf/rules/main.lua on the fixtures, offline."""

    def test_example_config_checks(self):
        r = run_cli(["check", "-c", CONF], env=CONF_ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"ok \(5 sources, rules [0-9a-f]{16}")

    def test_every_example_has_fixture_and_expected_output(self):
        for name, (_, fixture, _) in EXAMPLES.items():
            self.assertTrue(os.path.isfile(os.path.join(FIXTURES, fixture)), fixture)
            self.assertTrue(os.path.isfile(os.path.join(EXPECTED, name + ".json")), name)
        expected = {os.path.splitext(n)[0] for n in os.listdir(EXPECTED)}
        self.assertEqual(expected, set(EXAMPLES))

    def test_fixtures_print_expected_requests(self):
        for name, (source, fixture, headers) in EXAMPLES.items():
            with self.subTest(name=name):
                r = rule_test(CONF, source, os.path.join(FIXTURES, fixture), headers)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertRuleOutput(r.stdout, read(os.path.join(EXPECTED, name + ".json")),
                                      name)

    def test_expected_outputs_match_byte_for_byte(self):
        # The expected files are what rule-test prints (2-space indent, one newline).
        for name, (source, fixture, headers) in EXAMPLES.items():
            with self.subTest(name=name):
                r = rule_test(CONF, source, os.path.join(FIXTURES, fixture), headers)
                self.assertEqual(r.stdout, read(os.path.join(EXPECTED, name + ".json")))

    def test_not_urgent_ticket_is_skipped(self):
        r = rule_test(CONF, "zendesk", os.path.join(FIXTURES, "zendesk_ticket_normal.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), [])
        self.assertRegex(r.stderr, r"(?m)^skipped: zendesk: ticket 51612 priority is normal")

    def test_urgent_ticket_routes_to_vip_group(self):
        r = rule_test(CONF, "zendesk", os.path.join(FIXTURES, "zendesk_ticket_urgent.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("skipped:", r.stderr)
        [job] = json.loads(r.stdout)
        self.assertEqual((job["action"], job["method"], job["path"]),
                         ("route_did", "PATCH", "/v3/dids/number:442079460418"))
        rel = job["body"]["data"]["relationships"]
        self.assertIsNone(rel["voice_in_trunk"]["data"])
        self.assertEqual(rel["voice_in_trunk_group"]["data"],
                         {"type": "voice_in_trunk_groups",
                          "id": "f934c1f1-47d6-4831-9a38-21d8c7def3ca"})

    def test_form_without_content_type_is_not_decoded_as_form(self):
        # Without the header rule-test decodes JSON: the form is malformed JSON.
        r = rule_test(CONF, "zapier", os.path.join(FIXTURES, "zapier_oncall.form"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")

    def test_legacy_api_version_uses_legacy_names(self):
        tmp = make_tmpdir("hookline-rules-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = json.loads(read(CONF))
        conf_dir = os.path.dirname(CONF)
        cfg["didww"]["api_version"] = "2021-04-19"
        cfg["store"]["url"] = "sqlite:" + os.path.join(tmp, "events.db")
        cfg["rules"]["script"] = os.path.join(conf_dir, cfg["rules"]["script"])
        cfg["rules"]["data"] = {k: os.path.join(conf_dir, v)
                                for k, v in cfg["rules"]["data"].items()}
        path = write_config(tmp, cfg)
        for name, (source, fixture, headers) in EXAMPLES.items():
            with self.subTest(name=name):
                r = rule_test(path, source, os.path.join(FIXTURES, fixture), headers)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertNotIn("voice_in", r.stdout)
                # 2021-04-19 names: trunk, trunk_group, trunks, trunk_groups.
                legacy = read(os.path.join(EXPECTED, name + ".json")).replace("voice_in_", "")
                self.assertRuleOutput(r.stdout, legacy, name + " (2021-04-19)")
        r = rule_test(path, "zapier", os.path.join(FIXTURES, "zapier_oncall.form"), [FORM])
        [job] = json.loads(r.stdout)
        self.assertEqual(job["path"], "/v3/trunk_groups/9e4d31fe-21ac-409c-8ca3-3d0fe1eee2b2")
        self.assertEqual(list(job["body"]["data"]["relationships"]), ["trunks"])
        self.assertEqual(job["body"]["data"]["type"], "trunk_groups")


# ---------------------------------------------------------------------------------------
# Rule errors, offline
# ---------------------------------------------------------------------------------------

class RuleErrorTest(unittest.TestCase):
    """rule-test and check on small scripts written into a temp dir."""

    def setUp(self):
        self.tmp = make_tmpdir("hookline-rules-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        os.makedirs(os.path.join(self.tmp, "rules"))
        self.script = os.path.join(self.tmp, "rules", "test.lua")
        self.event = os.path.join(self.tmp, "event.json")
        with open(self.event, "w") as f:
            json.dump({"ticket": {"id": 7}}, f)
        self.config = write_config(self.tmp, {
            "store": {"url": "sqlite:events.db"},
            "didww": {"base_url": LOOPBACK_DIDWW, "api_version": "2022-05-10"},
            "rules": {"script": "rules/test.lua"},
            "sources": {"lab": {"verify": {"scheme": "none", "insecure": True}}},
        })

    def write_rule(self, text):
        with open(self.script, "w") as f:
            f.write(text)
        return text

    def run_rule(self, body):
        """Writes on_event with body on its own lines; returns (result, text)."""
        text = self.write_rule("-- test rule\nlocal DID = %r\nlocal TRUNK = %r\n"
                               "function on_event(ev)\n%s\nend\n"
                               % (UUID_DID, UUID_A, body))
        return rule_test(self.config, "lab", self.event, env={}), text

    def assertRuleError(self, body, marker, *fragments):
        r, text = self.run_rule(body)
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stdout, "")
        line = line_of(text, marker)
        # Config warnings (the insecure source) may precede; the error is one line.
        errors = [ln for ln in r.stderr.splitlines() if not re.search(r": warning: ", ln)]
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertTrue(errors[0].startswith("rules/test.lua:%d: " % line),
                        "expected rules/test.lua:%d: in %r" % (line, errors[0]))
        for frag in fragments:
            self.assertIn(frag, errors[0])
        return errors[0]

    def test_good_rule_plans(self):
        r, _ = self.run_rule("  didww.route_did{did = DID, trunk = TRUNK}")
        self.assertEqual(r.returncode, 0, r.stderr)
        [job] = json.loads(r.stdout)
        self.assertEqual(job["path"], "/v3/dids/" + UUID_DID)

    def test_route_did_with_trunk_and_group(self):
        self.assertRuleError("  local x = 1\n  didww.route_did{did = DID, trunk = TRUNK,"
                             " trunk_group = TRUNK}", "didww.route_did",
                             "didww.route_did:", "'trunk'", "'trunk_group'")

    def test_unknown_field(self):
        self.assertRuleError("  didww.route_did{did = DID, trunk = TRUNK, trunk_grp = TRUNK}",
                             "didww.route_did", "didww.route_did:", "unknown field",
                             "trunk_grp")

    def test_missing_did_and_number(self):
        self.assertRuleError("\n\n  didww.unroute_did{}", "didww.unroute_did",
                             "didww.unroute_did:", "'did'", "'number'")
        self.assertRuleError("  didww.route_did{trunk = TRUNK}", "didww.route_did",
                             "didww.route_did:", "missing", "'did'")

    def test_did_and_number_together(self):
        self.assertRuleError("  didww.unroute_did{did = DID, number = '+442079460418'}",
                             "didww.unroute_did", "didww.unroute_did:", "'did'", "'number'")

    def test_non_uuid(self):
        self.assertRuleError("  didww.route_did{did = DID, trunk = 'trunk-7'}",
                             "didww.route_did", "didww.route_did:", "'trunk'", "UUID")
        self.assertRuleError("  didww.route_did{did = '{%s}', trunk = TRUNK}" % UUID_DID,
                             "didww.route_did", "didww.route_did:", "'did'", "UUID")
        self.assertRuleError("  didww.set_group_trunks{trunk_group = TRUNK,"
                             " trunks = {TRUNK, 'nope'}}", "didww.set_group_trunks",
                             "didww.set_group_trunks:", "trunks[2]")

    def test_capacity_limit_out_of_range(self):
        self.assertRuleError("  didww.update_did{did = DID, capacity_limit = 40000}",
                             "didww.update_did", "didww.update_did:", "capacity_limit",
                             "32767")

    def test_bad_number(self):
        self.assertRuleError("  didww.route_did{number = '12', trunk = TRUNK}",
                             "didww.route_did", "didww.route_did:", "'number'")

    def test_numbers_as_people_write_them(self):
        """docs/contract.md section 4: separators and one leading '+' are dropped, up to 17 digits
        (DIDWW's sandbox numbers); rule-test shows the normalised digits."""
        r, _ = self.run_rule("  didww.unroute_did{number = '+43 (720) 000-0007'}\n"
                             "  didww.unroute_did{number = '+44 20 7946 0418'}\n"
                             "  didww.unroute_did{number = '+12345678901234567'}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([j["path"] for j in json.loads(r.stdout)],
                         ["/v3/dids/number:437200000007", "/v3/dids/number:442079460418",
                          "/v3/dids/number:12345678901234567"])

    def test_national_and_00_forms_are_refused_saying_so(self):
        err = self.assertRuleError("  didww.route_did{number = '0049 30 1234567', trunk = TRUNK}",
                                   "didww.route_did", "didww.route_did:", "'number'",
                                   "'0049 30 1234567' is in 00 form")
        self.assertIn("write it as +49301234567", err)
        err = self.assertRuleError("  didww.route_did{number = '0720 000 0007', trunk = TRUNK}",
                                   "didww.route_did", "didww.route_did:", "'number'",
                                   "'0720 000 0007' is in national form")
        self.assertIn("must be converted to international form", err)

    def test_runtime_error_names_file_and_line(self):
        self.assertRuleError("  local ticket = ev.body.ticket\n"
                             "  local org = ev.body.organization.id\n"
                             "  didww.route_did{did = DID, trunk = TRUNK}",
                             "ev.body.organization.id", "attempt to index a nil value")

    def test_error_in_helper_names_the_helper_line(self):
        text = self.write_rule("local function plan(n)\n"
                               "  didww.update_did{number = n, terminated = 'yes'}\n"
                               "end\n"
                               "function on_event(ev)\n  plan('+442079460418')\nend\n")
        r = rule_test(self.config, "lab", self.event, env={})
        self.assertEqual(r.returncode, 1)
        self.assertIn("rules/test.lua:%d: didww.update_did:" % line_of(text, "update_did"),
                      r.stderr)
        self.assertIn("terminated", r.stderr)

    def test_check_reports_syntax_error_with_line(self):
        text = self.write_rule("function on_event(ev)\n  local x = \n"
                               "  didww.unroute_did{number = '+442079460418'\nend\n")
        r = run_cli(["check", "-c", self.config], env={})
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"(?m)^rules/test\.lua:\d+: ")
        m = re.search(r"(?m)^rules/test\.lua:(\d+): ", r.stderr)
        self.assertGreaterEqual(int(m.group(1)), 2)
        self.assertLessEqual(int(m.group(1)), text.count("\n"))
        self.assertNotIn(": ok", r.stdout)

    def test_check_requires_on_event(self):
        self.write_rule("function on_webhook(ev)\nend\n")
        r = run_cli(["check", "-c", self.config], env={})
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"(?m)^rules/test\.lua.*on_event")

    def test_check_reports_top_level_runtime_error(self):
        text = self.write_rule("local teams = nil\nlocal vip = teams.vip\n"
                               "function on_event(ev)\nend\n")
        r = run_cli(["check", "-c", self.config], env={})
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("rules/test.lua:%d:" % line_of(text, "teams.vip"), r.stderr)

    def test_check_accepts_good_rule(self):
        self.write_rule("function on_event(ev)\nend\n")
        r = run_cli(["check", "-c", self.config], env={})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"rules [0-9a-f]{16}")


# ---------------------------------------------------------------------------------------
# Through the running service
# ---------------------------------------------------------------------------------------

def service_config(script, data=None, **rules):
    cfg = {
        "listen": {"threads": 1},  # one rule state: a leak between events would show
        "didww": {"base_url": LOOPBACK_DIDWW, "api_version": "2022-05-10"},
        "rules": dict({"script": script}, **rules),
        "sources": {name: {"verify": {"scheme": "none", "insecure": True}}
                    for name in ("lab", "zendesk", "hubspot", "zapier", "freshdesk", "crm")},
    }
    if data:
        cfg["rules"]["data"] = data
    return cfg


class ServiceAssertions(RuleAssertions):
    def post_json(self, srv, source, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        res = srv.post(source, data, {"Content-Type": content_type})
        self.assertEqual(res.status, 202, res)
        return res.json()

    def jobs_of(self, srv, source, event_id):
        return srv.query("SELECT action, method, path, body FROM jobs"
                         " WHERE source = ? AND event_id = ? ORDER BY id", (source, event_id))

    def kinds(self, records):
        return [r["kind"] for r in records]


class ExampleRulesServiceTest(unittest.TestCase, ServiceAssertions):
    """The example rules, served: stored jobs equal rule-test's output."""

    @classmethod
    def setUpClass(cls):
        conf_dir = os.path.dirname(CONF)
        cfg = service_config(os.path.join(conf_dir, "rules", "main.lua"),
                             data={"teams": os.path.join(conf_dir, "rules", "teams.json")})
        cfg["sources"]["zendesk"]["event_id"] = "json:/id"
        cls.srv = HooklineServer(cfg)
        cls.addClassCleanup(cls.srv.cleanup)
        cls.srv.start()

    def test_fixtures_store_the_planned_jobs(self):
        srv = self.srv
        for name, (source, fixture, headers) in EXAMPLES.items():
            with self.subTest(name=name):
                path = os.path.join(FIXTURES, fixture)
                ctype = "application/x-www-form-urlencoded" if FORM in headers \
                    else "application/json"
                expected = rule_test(srv.config_path, source, path, headers, env={})
                self.assertEqual(expected.returncode, 0, expected.stderr)
                planned = json.loads(expected.stdout)
                answer = self.post_json(srv, source, read(path, "rb"), ctype)
                self.assertEqual(answer["status"], "accepted")
                self.assertEqual(answer["jobs"], len(planned))
                rows = self.jobs_of(srv, source, answer["event_id"])
                self.assertEqual(len(rows), len(planned))
                for (action, method, jpath, body), want in zip(rows, planned):
                    self.assertEqual((action, method, jpath),
                                     (want["action"], want["method"], want["path"]))
                    self.assertEqual(json.loads(body), want["body"])
                    # Stored as sent: the seed's key order, compact.
                    self.assertEqual(ordered(body), ordered(json.dumps(want["body"])))
                    self.assertDidwwBodyOrder(ordered(body), name)
                status = srv.query("SELECT status FROM events WHERE source = ? AND event_id = ?",
                                   (source, answer["event_id"]))
                self.assertEqual(status, [("accepted",)])

    def test_zendesk_urgent_audit_trail(self):
        srv = self.srv
        body = json.loads(read(os.path.join(FIXTURES, "zendesk_ticket_urgent.json")))
        body["id"] = "6d1b7c0e-3f0a-4d5e-9b8e-2a91c4f7e399"  # a new Zendesk event id
        answer = self.post_json(srv, "zendesk", body)
        self.assertEqual(answer, {"event_id": body["id"], "status": "accepted", "jobs": 1})
        records, _ = srv.audit("--event", body["id"])
        self.assertEqual(self.kinds(records), ["event.received", "rule.decided", "job.queued"])
        received, decided, queued = records
        self.assertEqual(received["detail"]["jobs"], 1)
        self.assertRegex(decided["detail"]["rule_version"], r"^[0-9a-f]{16}$")
        self.assertEqual(decided["detail"]["actions"], ["route_did"])
        self.assertEqual(decided["number"], "442079460418")
        [(job_id, path)] = srv.query("SELECT id, path FROM jobs WHERE event_id = ?",
                                     (body["id"],))
        self.assertEqual(queued["job_id"], job_id)
        self.assertEqual(queued["detail"]["path"], path)
        self.assertEqual(queued["number"], "442079460418")

    def test_skipped_example_is_audited(self):
        srv = self.srv
        body = json.loads(read(os.path.join(FIXTURES, "zendesk_ticket_normal.json")))
        body["id"] = "a43f0e52-8b6d-4c19-b7a2-d0e5f3c81999"  # not the fixture's: no duplicate
        answer = self.post_json(srv, "zendesk", body)
        self.assertEqual((answer["status"], answer["jobs"]), ("accepted", 0))
        records, _ = srv.audit("--event", body["id"])
        self.assertEqual(self.kinds(records), ["event.received", "rule.skipped"])
        self.assertIn("priority is normal, not urgent", records[1]["detail"]["reason"])


LAB_RULE = """-- lab rule: behaviour chosen by the event body
TRUNK = "%(trunk)s"

function on_event(ev)
  local mode = ev.body.mode
  if mode == "fail" then
    local ticket = nil
    return ticket.requester -- FAIL HERE
  elseif mode == "skip" then
    skip("lab: nothing to do for " .. ev.id)
  elseif mode == "spin" then
    while true do end
  elseif mode == "leak" then
    if seen_before then error("leak: a global from a previous event is visible") end
    seen_before = true
  end
  didww.route_did{number = "+442079460418", trunk = TRUNK}
end
"""


class LabServiceTest(unittest.TestCase, ServiceAssertions):
    """A purpose-built rule in the server's own directory (rules/lab.lua)."""

    def start_lab(self, trunk=UUID_A, **rules):
        tmp = make_tmpdir("hookline-rules-")
        if not os.environ.get("HOOKLINE_KEEP_TMP"):
            self.addCleanup(shutil.rmtree, tmp, True)
        os.makedirs(os.path.join(tmp, "rules"))
        self.rule_path = os.path.join(tmp, "rules", "lab.lua")
        self.write_lab(LAB_RULE % {"trunk": trunk})
        srv = HooklineServer(service_config("rules/lab.lua", **rules), tmpdir=tmp)
        self.addCleanup(srv.cleanup)
        srv.start()
        return srv

    def write_lab(self, text):
        tmp = self.rule_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.rule_path)
        return text

    def trunk_of(self, srv, event_id):
        [(_, _, _, body)] = self.jobs_of(srv, "lab", event_id)
        return json.loads(body)["data"]["relationships"]["voice_in_trunk"]["data"]["id"]

    def test_failing_rule_stores_event_as_rule_failed(self):
        srv = self.start_lab()
        answer = self.post_json(srv, "lab", {"mode": "fail", "n": 1})
        self.assertEqual((answer["status"], answer["jobs"]), ("rule_failed", 0))
        eid = answer["event_id"]
        self.assertEqual(srv.query("SELECT status FROM events WHERE event_id = ?", (eid,)),
                         [("rule_failed",)])
        self.assertEqual(self.jobs_of(srv, "lab", eid), [])
        records, _ = srv.audit("--event", eid)
        self.assertEqual(self.kinds(records), ["event.received", "rule.failed"])
        line = line_of(LAB_RULE, "FAIL HERE")
        self.assertRegex(records[1]["detail"]["reason"],
                         r"^rules/lab\.lua:%d: attempt to index a nil value" % line)
        self.assertRegex(records[1]["detail"]["rule_version"], r"^[0-9a-f]{16}$")
        # The next event is processed normally.
        answer = self.post_json(srv, "lab", {"mode": "ok", "n": 2})
        self.assertEqual((answer["status"], answer["jobs"]), ("accepted", 1))

    def test_skipping_rule_is_audited_with_reason(self):
        srv = self.start_lab()
        answer = self.post_json(srv, "lab", {"mode": "skip"})
        self.assertEqual((answer["status"], answer["jobs"]), ("accepted", 0))
        eid = answer["event_id"]
        records, _ = srv.audit("--event", eid)
        self.assertEqual(self.kinds(records), ["event.received", "rule.skipped"])
        self.assertEqual(records[1]["detail"]["reason"], "lab: nothing to do for " + eid)
        self.assertEqual(self.jobs_of(srv, "lab", eid), [])
        self.assertEqual(srv.query("SELECT status FROM events WHERE event_id = ?", (eid,)),
                         [("accepted",)])

    def test_hot_reload(self):
        srv = self.start_lab(trunk=UUID_A)
        first = self.post_json(srv, "lab", {"mode": "ok", "n": 1})
        self.assertEqual(self.trunk_of(srv, first["event_id"]), UUID_A)
        [old] = srv.audit("--event", first["event_id"], "--kind", "rule.decided")[0]

        # A new rule: SIGHUP, wait for rules.reloaded, then events use it.
        self.write_lab(LAB_RULE % {"trunk": UUID_B})
        srv.signal(signal.SIGHUP)
        reloaded = srv.wait_audit(lambda rs: len(rs) >= 1, "--kind", "rules.reloaded")
        self.assertEqual(len(reloaded), 1, "no rules.reloaded within the wait")
        new_version = reloaded[0]["detail"]["rule_version"]
        self.assertNotEqual(new_version, old["detail"]["rule_version"])
        second = self.post_json(srv, "lab", {"mode": "ok", "n": 2})
        self.assertEqual(self.trunk_of(srv, second["event_id"]), UUID_B)
        [dec] = srv.audit("--event", second["event_id"], "--kind", "rule.decided")[0]
        self.assertEqual(dec["detail"]["rule_version"], new_version)

        # A broken rule: reload fails with file:line, the last good rule stays.
        broken = self.write_lab("function on_event(ev)\n  local = 1\nend\n")
        srv.signal(signal.SIGHUP)
        failed = srv.wait_audit(lambda rs: len(rs) >= 1, "--kind", "rules.reload_failed")
        self.assertEqual(len(failed), 1, "no rules.reload_failed within the wait")
        self.assertRegex(failed[0]["detail"]["reason"],
                         r"^rules/lab\.lua:%d: " % line_of(broken, "local = 1"))
        third = self.post_json(srv, "lab", {"mode": "ok", "n": 3})
        self.assertEqual((third["status"], third["jobs"]), ("accepted", 1))
        self.assertEqual(self.trunk_of(srv, third["event_id"]), UUID_B)
        [dec] = srv.audit("--event", third["event_id"], "--kind", "rule.decided")[0]
        self.assertEqual(dec["detail"]["rule_version"], new_version)
        self.assertEqual(srv.get("/readyz").status, 200)

    def test_instruction_limit_then_next_event(self):
        srv = self.start_lab(instruction_limit=100000)
        t0 = time.monotonic()
        answer = self.post_json(srv, "lab", {"mode": "spin"})
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual((answer["status"], answer["jobs"]), ("rule_failed", 0))
        records, _ = srv.audit("--event", answer["event_id"], "--kind", "rule.failed")
        self.assertEqual(len(records), 1)
        self.assertRegex(records[0]["detail"]["reason"],
                         r"^rules/lab\.lua:\d+: instruction limit of 100000 exceeded")
        answer = self.post_json(srv, "lab", {"mode": "ok"})
        self.assertEqual((answer["status"], answer["jobs"]), ("accepted", 1))

    def test_globals_do_not_leak_between_events(self):
        srv = self.start_lab()
        ids = []
        for n in range(4):
            answer = self.post_json(srv, "lab", {"mode": "leak", "n": n})
            self.assertEqual((answer["status"], answer["jobs"]), ("accepted", 1), answer)
            ids.append(answer["event_id"])
        failed, _ = srv.audit("--kind", "rule.failed")
        self.assertEqual(failed, [])
        # The load-time global still reads through: every job used TRUNK.
        for eid in ids:
            self.assertEqual(self.trunk_of(srv, eid), UUID_A)


if __name__ == "__main__":
    unittest.main()

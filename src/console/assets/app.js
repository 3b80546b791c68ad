// app.js: the console's router and views. Each view is a hash route whose query
// holds what the view shows (#/did?q=+43 720 000 0007), so every view is linkable.
// All data is rendered through dom.js (text nodes only).
import {el, append, clear, when, pre, pretty, ago, route, link} from "./dom.js";
import * as api from "./api.js";
import {lineChart} from "./chart.js";

const $ = (id) => document.getElementById(id);
let timer = null;       // the current view's refresh timer
let generation = 0;     // bumps on every route change: late answers of an old view are dropped

function isAdmin() { const s = api.current(); return s && s.role === "admin"; }

function heading(text) { return el("h1", {id: "view-title", tabindex: "-1"}, text); }

function problem(err) {
  const status = err && err.status ? err.status + " " : "";
  return el("p", {class: "error", role: "alert"}, status + (err && err.message ? err.message : String(err)));
}

function setTimer(fn, ms) { clearInterval(timer); timer = setInterval(fn, ms); }

// ---------- sign-in ----------

function showSignIn(message) {
  clearInterval(timer);
  $("nav").hidden = true;
  $("who").hidden = true;
  clear($("content"));
  $("signin-box").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").focus();
}

function showApp() {
  const s = api.current();
  $("signin-box").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("role").textContent = s.role + " · session " + s.session;
  $("nav-replay").hidden = s.role !== "admin";   // the replay is for the admin role
  $("role").title = "signed in as " + s.role + "; the session ends after 30 minutes unused or " +
                    "12 hours after sign-in, at sign-out or when hookline restarts";
  render();
}

async function onSignIn(ev) {
  ev.preventDefault();
  const input = $("token");
  const token = input.value;
  input.value = "";   // the token is not kept anywhere once sent
  try {
    await api.signIn(token);
    showApp();
  } catch (e) {
    showSignIn(e.status === 401 ? "That token is neither admin.token nor admin.viewer_token." : e.message);
  }
}

// ---------- views ----------

const views = {overview, did, event, jobs, tail, rules, integrity, replay};

async function render() {
  if (!api.current()) return;
  clearInterval(timer);
  generation++;
  const {view, params} = route();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = clear($("content"));
  const fn = views[view];
  if (!fn) { append(root, [heading("Not found"), el("p", {}, "No such view.")]); return; }
  document.title = "hookline · " + view;
  try {
    await fn(root, params, generation);
  } catch (e) {
    append(root, [problem(e)]);
  }
  const t = $("view-title");
  if (t && document.activeElement === document.body) t.focus({preventScroll: true});
}

function stat(label, value, extra) {
  return el("div", {class: "card stat"}, el("div", {class: "label"}, label),
            el("div", {class: "value"}, value), extra || null);
}

function rates(series, idx) {
  const out = [];
  for (let i = 1; i < series.length; i++) {
    const dt = series[i][0] - series[i - 1][0];
    const dv = series[i][idx] - series[i - 1][idx];
    out.push([series[i][0], dt > 0 && dv >= 0 ? dv / dt : 0]);
  }
  return out;
}

async function overview(root, params, gen) {
  append(root, [heading("Overview")]);
  const body = append(el("div"), []);
  root.appendChild(body);
  async function refresh() {
    const o = await api.get("/console/api/overview");
    if (gen !== generation) return;
    const c = o.current, s = o.series;
    const last = rates(s, 1), lastDone = rates(s, 3);
    const rate = (r) => r.length ? r[r.length - 1][1].toFixed(2) + " /s" : "-";
    clear(body);
    append(body, [
      el("div", {class: "grid"},
         stat("Webhooks received", String(c.events), el("div", {class: "muted"}, "now " + rate(last))),
         stat("Jobs delivered (done)", String(c.jobs_done), el("div", {class: "muted"}, "now " + rate(lastDone))),
         stat("Jobs dead", String(c.jobs_dead)),
         stat("Queue depth", String(c.queue_depth),
              el("div", {class: "muted"}, "oldest pending job: " + ago(c.queue_oldest_s))),
         stat("Delivery", o.paused ? "paused" : "running",
              o.paused ? el("div", {class: "error"}, o.paused_reason) : null),
         stat("Rule version", o.rule_version || "no rule")),
      el("div", {class: "grid"},
         el("div", {class: "card"}, el("h2", {}, "Ingest rate (events/s)"), lineChart(last, "ingest rate")),
         el("div", {class: "card"}, el("h2", {}, "Delivery rate (jobs done/s)"), lineChart(lastDone, "delivery rate")),
         el("div", {class: "card"}, el("h2", {}, "Queue depth"), lineChart(s.map((x) => [x[0], x[6]]), "queue depth"))),
      el("div", {class: "card"}, el("h2", {}, "DIDWW answers by status"),
         Object.keys(o.didww_by_status).length === 0 ? el("p", {class: "muted"}, "No request to DIDWW yet.") :
         el("table", {}, el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "HTTP status"), el("th", {scope: "col"}, "requests"))),
            el("tbody", {}, Object.entries(o.didww_by_status).sort().map(([k, v]) =>
              el("tr", {}, el("td", {}, k === "0" ? "0 (no answer)" : k), el("td", {}, String(v))))))),
      el("p", {class: "muted"}, "Samples every " + o.step_s + " s, kept for one hour in hookline's memory; updated ",
         when(o.now), "."),
    ]);
  }
  await refresh();
  setTimer(() => refresh().catch(() => {}), 10000);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// The digits hookline will search for (the server normalises, this only previews it).
function previewNumber(q) {
  return q.replace(/\(0\)/, "").replace(/[\s().\-+]/g, "");
}

function recordSummary(r) {
  const d = r.detail || {};
  const parts = [];
  if (r.http) parts.push(`${r.http.method || ""} ${r.http.path || ""} → ${r.http.status}` +
                         (r.http.error ? " (" + r.http.error + ")" : "") +
                         (r.http.attempt ? ", attempt " + r.http.attempt : ""));
  for (const k of ["action", "reason", "by", "trigger", "outcome", "rule_version", "role", "session", "target"]) {
    if (d[k] !== undefined && d[k] !== null) parts.push(k + ": " + (typeof d[k] === "string" ? d[k] : JSON.stringify(d[k])));
  }
  return parts.join(" · ");
}

function timelineItem(r) {
  const d = r.detail || {};
  const cls = "k-" + String(r.kind).replace(/\./g, "-") + (String(r.kind).startsWith("admin.") ? " k-admin" : "");
  const li = el("li", {class: cls},
    el("div", {}, when(r.time), " ", el("span", {class: "kind"}, r.kind), " ",
       el("span", {class: "muted"}, "#" + r.seq),
       r.source ? [" · ", r.source] : null,
       r.event_id ? [" · event ", el("a", {href: link("event", {id: r.event_id})}, r.event_id)] : null,
       r.job_id ? [" · job ", el("a", {href: link("jobs", {job: r.job_id})}, String(r.job_id))] : null,
       r.number ? [" · +", r.number] : null),
    el("div", {class: "muted"}, recordSummary(r)));
  if (d.before !== undefined || d.after !== undefined) {
    li.appendChild(el("div", {class: "sides"},
      el("div", {}, el("strong", {}, "before"), pre(d.before === undefined ? null : d.before)),
      el("div", {}, el("strong", {}, "after"), pre(d.after === undefined ? null : d.after))));
  }
  return li;
}

async function auditAll(query, max) {
  let out = [], after = null;
  for (let page = 0; page < 20 && out.length < max; page++) {
    const q = new URLSearchParams(query);
    q.set("limit", "1000");
    if (after) q.set("after", after);
    const r = await api.get("/v1/audit?" + q.toString());
    out = out.concat(r.records);
    after = r.next_after;
    if (!after) break;
  }
  return out;
}

async function did(root, params, gen) {
  const q = params.get("q") || "";
  const input = el("input", {id: "did-q", type: "search", value: q, autocomplete: "off",
                             placeholder: "+43 720 000 0007 or a DID id",
                             "aria-describedby": "did-hint"});
  const hint = el("p", {id: "did-hint", class: "muted"}, "A number as a person writes it (international form) or a DID's id.");
  const out = el("div", {id: "did-result", "aria-live": "polite"});
  append(root, [heading("DID story"),
    el("div", {class: "card"}, el("label", {for: "did-q"}, "Number or DID id"), input, hint), out]);
  let debounce = null;
  input.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      history.replaceState(null, "", link("did", input.value ? {q: input.value} : {}));
      search(input.value, gen);
    }, 300);
  });
  async function search(text, g) {
    text = text.trim();
    clear(out);
    if (!text) return;
    const byDid = UUID.test(text);
    const query = byDid ? {did: text} : {number: text};
    if (!byDid) out.appendChild(el("p", {class: "muted"}, "Searching for the number ", el("span", {class: "mono"}, previewNumber(text)), "…"));
    try {
      const recs = await auditAll(query, 5000);
      if (g !== generation || input.value.trim() !== text) return;
      clear(out);
      const jobs = new Set(recs.filter((r) => r.job_id).map((r) => r.job_id));
      const events = new Set(recs.filter((r) => r.event_id).map((r) => r.event_id));
      append(out, [el("p", {id: "did-summary"}, `${recs.length} records · ${events.size} events · ${jobs.size} jobs`),
                   recs.length ? el("ol", {class: "timeline", id: "timeline"}, recs.map(timelineItem))
                               : el("p", {class: "muted"}, "Nothing recorded about this DID.")]);
    } catch (e) {
      if (g !== generation) return;
      clear(out);
      out.appendChild(problem(e));
    }
  }
  if (q) await search(q, gen);
  input.focus();
}

async function event(root, params, gen) {
  const id = params.get("id") || "";
  const input = el("input", {id: "event-id", type: "search", value: id, autocomplete: "off"});
  const form = el("form", {class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = link("event", {id: input.value.trim()}); }},
                  el("div", {}, el("label", {for: "event-id"}, "Event id"), input), el("button", {type: "submit"}, "Show"));
  append(root, [heading("Event"), el("div", {class: "card"}, form)]);
  if (!id) return;
  let evs;
  try { evs = (await api.get("/v1/events/" + encodeURIComponent(id))).events; }
  catch (e) { root.appendChild(problem(e)); return; }
  const recs = await auditAll({event: id}, 2000);
  if (gen !== generation) return;
  for (const ev of evs) {
    const dryOut = el("div", {"aria-live": "polite"});
    const dry = el("button", {type: "button", class: "secondary", onclick: async () => {
      clear(dryOut);
      try {
        const r = await api.get("/console/api/dryrun?" + new URLSearchParams({event: id, source: ev.source}));
        append(dryOut, [el("p", {}, "Outcome with rule ", el("span", {class: "mono"}, r.rule_version || "-"), ": ",
                           el("strong", {}, r.outcome), r.message ? " · " + r.message : ""),
                        r.jobs && r.jobs.length ? el("table", {}, el("thead", {}, el("tr", {}, ["action", "request", "body"].map((h) => el("th", {scope: "col"}, h)))),
                          el("tbody", {}, r.jobs.map((j) => el("tr", {}, el("td", {}, j.action), el("td", {class: "mono"}, j.method + " " + j.path), el("td", {}, pre(j.body))))))
                          : el("p", {class: "muted"}, "No job would be planned."),
                        el("p", {class: "muted"}, "Dry run: nothing was stored or sent.")]);
      } catch (e) { dryOut.appendChild(problem(e)); }
    }}, "Dry run with the rule in force");
    const headers = Object.entries(ev.headers || {});
    append(root, [el("section", {class: "card"},
      el("h2", {}, ev.source + " · " + ev.event_id),
      el("p", {}, "Received ", when(ev.received_at), " · status ", el("span", {class: "pill"}, ev.status), " · ", ev.content_type),
      el("h3", {}, "Headers (credentials redacted)"),
      el("table", {class: "headers"}, el("tbody", {}, headers.map(([k, v]) => el("tr", {}, el("th", {scope: "row", class: "mono"}, k), el("td", {class: "mono"}, v))))),
      el("h3", {}, "Body"), pre(ev.body, "event-body"),
      el("h3", {}, "Rule outcome and planned jobs"),
      el("ol", {class: "timeline"}, recs.filter((r) => r.source === ev.source || !r.source).map(timelineItem)),
      el("h3", {}, "Dry run"), dry, dryOut)]);
  }
}

const STATES = ["pending", "running", "dead", "done", "cancelled", "superseded", "any"];

async function jobs(root, params, gen) {
  const only = params.get("job");
  const state = params.get("state") || (only ? "any" : "pending");
  const select = el("select", {id: "job-state", onchange: () => { location.hash = link("jobs", {state: select.value}); }},
                    STATES.map((s) => el("option", {value: s, selected: s === state}, s)));
  const status = el("p", {id: "jobs-status", role: "status"});
  const resumeBtn = el("button", {type: "button", id: "resume", disabled: !isAdmin(),
                                  title: isAdmin() ? null : "viewer role: read only",
                                  onclick: async () => {
    try {
      const r = await api.post("/v1/delivery/resume"); status.textContent = "Delivery: " + r.status;
      if (r.status === "resumed") deliveryState.textContent = "Delivery running ";
    }
    catch (e) { status.textContent = ""; status.appendChild(problem(e)); }
  }}, "Resume delivery");
  const reasonIn = el("input", {type: "text", id: "pause-reason", maxlength: "200", disabled: !isAdmin(),
                                "aria-label": "Reason for the pause", placeholder: "reason (optional)"});
  const pauseBtn = el("button", {type: "button", id: "pause", class: "danger", disabled: !isAdmin(),
                                 title: isAdmin() ? null : "viewer role: read only"}, "Pause delivery");
  let pauseArmed = false;
  pauseBtn.addEventListener("click", async () => {
    if (!pauseArmed) {   // the confirm step: a second press does it
      pauseArmed = true;
      pauseBtn.textContent = "Confirm: pause all delivery";
      pauseBtn.focus();
      return;
    }
    pauseArmed = false;
    pauseBtn.textContent = "Pause delivery";
    try {
      const reason = reasonIn.value.trim();
      const r = await api.post("/v1/delivery/pause", reason ? {reason} : {});
      status.textContent = "Delivery: " + r.status + " (" + r.reason + ")";
      deliveryState.textContent = "Delivery paused: " + r.reason + " ";
    } catch (e) { status.textContent = ""; status.appendChild(problem(e)); }
  });
  let paused = "";
  try { const o = await api.get("/console/api/overview"); paused = o.paused ? "paused: " + o.paused_reason : "running"; } catch (e) { paused = "unknown"; }
  const deliveryState = el("span", {class: "muted", id: "delivery-state"}, "Delivery " + paused + " ");
  append(root, [heading("Jobs"),
    el("div", {class: "card row"}, el("div", {}, el("label", {for: "job-state"}, "State"), select),
       el("div", {}, deliveryState, resumeBtn, " ", reasonIn, " ", pauseBtn)),
    status]);
  const r = await api.get("/v1/jobs?" + new URLSearchParams(state === "any" ? {limit: "1000"} : {state, limit: "500"}));
  if (gen !== generation) return;
  const list = only ? r.jobs.filter((j) => String(j.id) === only) : r.jobs;
  function action(j, verb) {
    const btn = el("button", {type: "button", class: verb === "cancel" ? "danger" : "", disabled: !isAdmin(),
                              title: isAdmin() ? null : "viewer role: read only", "data-job": j.id, "data-action": verb},
                   verb === "retry" ? "Retry" : "Cancel");
    let armed = false;
    btn.addEventListener("click", async () => {
      if (!armed) {   // the confirm step: a second press does it
        armed = true;
        btn.textContent = verb === "retry" ? `Confirm retry of job ${j.id}` : `Confirm cancel of job ${j.id}`;
        btn.focus();
        return;
      }
      btn.disabled = true;
      try {
        const res = await api.post(`/v1/jobs/${j.id}/${verb}`);
        status.textContent = `Job ${res.id} is now ${res.state}.`;
        btn.textContent = res.state;
      } catch (e) {
        status.textContent = "";
        status.appendChild(problem(e));
        btn.textContent = "refused";
      }
    });
    return btn;
  }
  append(root, [el("div", {class: "card"}, list.length === 0 ? el("p", {class: "muted"}, only ? "No job " + only + " in this list." : "No " + state + " job.") :
    el("table", {class: "jobs"},
       el("thead", {}, el("tr", {}, ["job", "action", "target", "event", "attempts", "last answer", "created", ""].map((h) => el("th", {scope: "col"}, h)))),
       el("tbody", {}, list.map((j) => el("tr", {"data-job": j.id},
         el("td", {}, String(j.id)), el("td", {}, j.action),
         el("td", {class: "mono"}, j.did ? el("a", {href: link("did", {q: j.did})}, j.did) : j.number ? el("a", {href: link("did", {q: "+" + j.number})}, "+" + j.number) : j.path),
         el("td", {}, el("a", {href: link("event", {id: j.event_id})}, j.event_id)),
         el("td", {}, String(j.attempts)),
         el("td", {}, j.last_status ? String(j.last_status) : "", j.last_error ? el("div", {class: "muted"}, j.last_error) : null),
         el("td", {}, when(j.created_at)),
         el("td", {}, j.state === "dead" ? action(j, "retry") : null, j.state === "pending" ? action(j, "cancel") : null)))))),
    el("p", {class: "muted"}, "Every change is confirmed first and recorded in the audit trail with your role and session.")]);
}

async function tail(root, params, gen) {
  const kind = params.get("kind") || "";
  const input = el("input", {id: "tail-kind", type: "search", value: kind, placeholder: "job.* or rule.failed", autocomplete: "off"});
  const form = el("form", {class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = link("tail", input.value.trim() ? {kind: input.value.trim()} : {}); }},
                  el("div", {}, el("label", {for: "tail-kind"}, "Kind (exact, or a prefix ending in *)"), input),
                  el("button", {type: "submit"}, "Filter"));
  const list = el("ol", {class: "timeline", id: "tail-list", "aria-live": "polite"});
  append(root, [heading("Live tail"), el("div", {class: "card"}, form), el("p", {class: "muted"}, "New records appear at the top; polled every 2 s."), list]);
  const base = kind ? {kind} : {};
  const first = await auditAll(Object.assign({since: "1h"}, base), 20000);
  if (gen !== generation) return;
  let after = first.length ? first[first.length - 1].seq : 0;
  for (const r of first.slice(-100)) list.insertBefore(timelineItem(r), list.firstChild);
  async function poll() {
    const q = new URLSearchParams(Object.assign({limit: "500"}, base));
    if (after) q.set("after", after);
    else q.set("since", "1h");
    const r = await api.get("/v1/audit?" + q.toString());
    if (gen !== generation) return;
    for (const rec of r.records) {
      list.insertBefore(timelineItem(rec), list.firstChild);
      after = rec.seq;
    }
    while (list.children.length > 300) list.removeChild(list.lastChild);
  }
  setTimer(() => poll().catch(() => {}), 2000);
}

async function rules(root, params, gen) {
  const r = await api.get("/console/api/rules");
  if (gen !== generation) return;
  const status = el("div", {id: "rules-status", role: "status"});
  const reload = el("button", {type: "button", id: "reload", disabled: !isAdmin() || !r.configured,
                               title: isAdmin() ? null : "viewer role: read only", onclick: async () => {
    clear(status);
    try {
      const res = await api.post("/v1/rules/reload");
      status.appendChild(el("p", {class: "ok"}, "Reloaded: version " + res.rule_version));
    } catch (e) { status.appendChild(problem(e)); }
  }}, "Reload the rule");
  const failedNewer = r.last_reload_failed && (!r.last_reload || r.last_reload_failed.seq > r.last_reload.seq);
  append(root, [heading("Rules"), el("div", {class: "card"},
    el("p", {}, "Version in force: ", el("strong", {class: "mono", id: "rule-version"}, r.rule_version || (r.configured ? "-" : "no rules.script configured"))),
    r.last_reload ? el("p", {}, "Last reload: ", when(r.last_reload.time), " (", r.last_reload.detail.trigger || "", ")") : el("p", {class: "muted"}, "Not reloaded since the trail began."),
    r.last_reload_failed ? el("div", {class: failedNewer ? "error" : "muted"},
      el("p", {}, (failedNewer ? "The last reload failed " : "An earlier reload failed "), when(r.last_reload_failed.time), ":"),
      pre(r.last_reload_failed.detail.reason || "", "mono")) : null,
    reload, status)]);
}

async function integrity(root, params, gen) {
  const out = el("div", {id: "verify-result", role: "status"});
  const btn = el("button", {type: "button", id: "verify", onclick: async () => {
    btn.disabled = true;
    clear(out).appendChild(el("p", {}, "Verifying the chain…"));
    try {
      let r = await api.post("/console/api/verify");
      for (let i = 0; i < 600 && r.state === "running"; i++) {
        await new Promise((res) => setTimeout(res, 500));
        if (gen !== generation) return;
        r = await api.get("/console/api/verify");
      }
      show(r);
    } catch (e) { clear(out).appendChild(problem(e)); }
    btn.disabled = false;
  }}, "Verify the audit chain");
  function show(r) {
    clear(out);
    const l = r.last;
    if (!l) { out.appendChild(el("p", {class: "muted"}, "Not verified yet in this process.")); return; }
    append(out, [el("p", {class: l.result === "intact" ? "ok" : "error"},
      l.result === "intact" ? `Intact: ${l.records} records` + (l.pruned_through ? ` (seq ${l.pruned_through} and earlier pruned by retention)` : "")
                            : `Broken${l.seq ? " at seq " + l.seq : ""}: ${l.message}`),
      el("p", {class: "muted"}, "Checked ", when(l.finished), " in ", ((l.finished - l.started) * 1000).toFixed(0), " ms.")]);
  }
  append(root, [heading("Integrity"), el("div", {class: "card"},
    el("p", {}, "Recomputes the audit trail's hash chain as `hookline audit verify` does, on a thread of its own."), btn, out)]);
  show(await api.get("/console/api/verify"));
}

// A candidate rule over the stored events: read-only (the server plans, compares
// and stores nothing but its audit record), on a thread of its own; polled here.
const SINCE = [["", "all stored events"], ["3600", "the last hour"], ["86400", "the last 24 hours"],
               ["604800", "the last 7 days"], ["2592000", "the last 30 days"]];

async function replay(root, params, gen) {
  append(root, [heading("Replay a candidate rule")]);
  if (!isAdmin()) {
    root.appendChild(el("p", {class: "error", role: "alert"}, "The replay of a candidate rule is for the admin role."));
    return;
  }
  const text = el("textarea", {id: "candidate", rows: "16", spellcheck: "false", autocomplete: "off",
                               "aria-label": "Candidate rule (Lua)", maxlength: "262144",
                               placeholder: "function on_event(ev)\n  ...\nend"});
  const file = el("input", {type: "file", id: "candidate-file", accept: ".lua,text/plain",
                            "aria-label": "Load the candidate from a file", onchange: async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    if (f.size > 262144) { clear(out).appendChild(problem(new Error("the candidate is at most 262144 bytes"))); return; }
    text.value = await f.text();
  }});
  const source = el("input", {type: "text", id: "replay-source", placeholder: "every source", autocomplete: "off"});
  const since = el("select", {id: "replay-since"}, SINCE.map(([v, t]) => el("option", {value: v}, t)));
  const limit = el("input", {type: "number", id: "replay-limit", min: "1", max: "100000", value: "10000"});
  const out = el("div", {id: "replay-result", role: "status", "aria-live": "polite"});
  const run = el("button", {type: "button", id: "replay-run", onclick: async () => {
    run.disabled = true;
    clear(out).appendChild(el("p", {}, "Replaying…"));
    try {
      const body = {rule: text.value, limit: Number(limit.value) || 10000};
      if (source.value.trim()) body.source = source.value.trim();
      if (since.value) body.since = Date.now() / 1000 - Number(since.value);
      let r = await api.post("/console/api/replay", body);
      for (let i = 0; i < 1200 && r.state === "running"; i++) {
        await new Promise((res) => setTimeout(res, 500));
        if (gen !== generation) return;
        r = await api.get("/console/api/replay");
      }
      show(r);
    } catch (e) { clear(out).appendChild(problem(e)); }
    run.disabled = false;
  }}, "Replay over stored events");
  function show(r) {
    clear(out);
    const l = r.last;
    if (!l) { out.appendChild(el("p", {class: "muted"}, "No replay yet in this process.")); return; }
    const rep = l.report;
    append(out, [el("p", {class: "muted"}, "Candidate ", el("span", {class: "mono"}, l.candidate_sha256.slice(0, 16)),
                    " (sha256) by ", l.by, ", ", when(l.finished), "; rule in force ", el("span", {class: "mono"}, l.rule_in_force || "-"), ".")]);
    if (!rep) { out.appendChild(el("p", {class: "error", role: "alert"}, "The replay stopped: " + (l.error || "unknown error"))); return; }
    const stat = (label, v, id) => el("div", {class: "stat"}, el("div", {class: "label"}, label), el("div", {class: "value", id}, String(v)));
    append(out, [el("div", {class: "grid"}, stat("events", rep.events, "replay-events"), stat("unchanged", rep.unchanged, "replay-unchanged"),
                    stat("changed", rep.changed, "replay-changed"), stat("failed", rep.failed, "replay-failed"))]);
    const acts = Object.entries(rep.actions || {});
    if (acts.length) out.appendChild(el("table", {id: "replay-actions"},
      el("thead", {}, el("tr", {}, ["action", "requests stored", "requests with the candidate"].map((h) => el("th", {scope: "col"}, h)))),
      el("tbody", {}, acts.map(([a, c]) => el("tr", {}, el("td", {class: "kind"}, a), el("td", {}, String(c.before)), el("td", {}, String(c.after)))))));
    const notes = [];
    if (rep.plans_from_jobs) notes.push(rep.plans_from_jobs + " events were stored before plans were kept: their stored plan is rebuilt from their jobs rows.");
    if (rep.no_plan) notes.push(rep.no_plan + " events have no stored plan: compared as planning nothing.");
    if (rep.other_rule_version) notes.push(rep.other_rule_version + " events were planned by another rule version than the one in force.");
    if (rep.data_read_as_now) notes.push("The candidate reads rules.data as it is now, not as it was when each event arrived.");
    if (rep.changes_not_listed) notes.push(rep.changes_not_listed + " more changed events are counted but not listed.");
    for (const n of notes) out.appendChild(el("p", {class: "muted"}, n));
    out.appendChild(el("h2", {}, "Changed events"));
    out.appendChild(rep.changes.length === 0 ? el("p", {class: "muted"}, "No decision changes.") :
      el("table", {id: "replay-changes"},
         el("thead", {}, el("tr", {}, ["event", "source", "before (stored)", "after (candidate)"].map((h) => el("th", {scope: "col"}, h)))),
         el("tbody", {}, rep.changes.map((c) => el("tr", {"data-event": c.event_id},
           el("td", {}, el("a", {href: link("event", {id: c.event_id})}, c.event_id), el("div", {class: "muted"}, when(c.received_at))),
           el("td", {}, c.source),
           el("td", {}, c.before_error ? el("p", {class: "error"}, "rule failed: " + c.before_error) : pre(c.before)),
           el("td", {}, pre(c.after)))))));
    if (rep.failures && rep.failures.length) {
      out.appendChild(el("h2", {}, "Failed with the candidate"));
      out.appendChild(el("table", {id: "replay-failures"}, el("tbody", {}, rep.failures.map((f) => el("tr", {},
        el("td", {}, el("a", {href: link("event", {id: f.event_id})}, f.event_id)), el("td", {}, f.source), el("td", {class: "mono"}, f.error))))));
    }
  }
  append(root, [el("div", {class: "card"},
    el("p", {}, "Runs a candidate rule over the stored events, oldest first, in the same sandbox and limits as the rule in force, and compares each plan with the one stored when the event arrived. Nothing is sent, stored or changed; the run is recorded in the audit trail (rules.replayed) with the candidate's sha256."),
    el("label", {for: "candidate"}, "Candidate rule (Lua)"), text,
    el("div", {class: "row"},
       el("div", {}, el("label", {for: "candidate-file"}, "or load a file"), file),
       el("div", {}, el("label", {for: "replay-source"}, "Source"), source),
       el("div", {}, el("label", {for: "replay-since"}, "Events from"), since),
       el("div", {}, el("label", {for: "replay-limit"}, "At most (events)"), limit),
       run)), out]);
  try { show(await api.get("/console/api/replay")); } catch (e) { out.appendChild(problem(e)); }
}

// ---------- start ----------

window.addEventListener("hashchange", render);
window.addEventListener("hookline-signed-out", () => showSignIn("Your session ended; sign in again."));
document.addEventListener("DOMContentLoaded", async () => {
  $("signin").addEventListener("submit", onSignIn);
  $("signout").addEventListener("click", async () => { await api.signOut().catch(() => {}); showSignIn("Signed out."); });
  if (await api.resume()) showApp();
  else showSignIn("");
});

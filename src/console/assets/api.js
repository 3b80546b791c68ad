// api.js: the console's calls to hookline. The session is an HttpOnly cookie the
// page cannot read; the CSRF token lives only in this module's memory (never in
// web storage, cookies the page reads, or a URL) and goes out in X-CSRF-Token on changes.
let session = null; // {role, session, csrf, expires}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || ("HTTP " + status));
    this.status = status;
    this.problem = problem;
  }
}

export function current() { return session; }

async function call(method, path, extraHeaders, json) {
  const headers = Object.assign({Accept: "application/json"}, extraHeaders || {});
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf;
  const init = {method, headers, credentials: "same-origin", cache: "no-store",
                redirect: "error", referrerPolicy: "no-referrer"};
  if (json !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(json); }
  const r = await fetch(path, init);
  let body = null;
  const text = await r.text();
  if (text) { try { body = JSON.parse(text); } catch (e) { body = null; } }
  if (!r.ok) {
    if (r.status === 401 && !path.endsWith("/console/api/session")) {
      session = null;
      window.dispatchEvent(new Event("hookline-signed-out"));
    }
    throw new ApiError(r.status, body);
  }
  return body;
}

export const get = (path) => call("GET", path);
export const post = (path, json) => call("POST", path, null, json);

export async function resume() {
  try { session = await call("GET", "/console/api/session"); } catch (e) { session = null; }
  return session;
}

export async function signIn(token) {
  session = await call("POST", "/console/api/session", {Authorization: "Bearer " + token});
  return session;
}

export async function signOut() {
  try { await call("DELETE", "/console/api/session"); } finally { session = null; }
}

// dom.js: building the page from data. Every value a webhook sender controls goes
// into the page as text (createTextNode / textContent), never as markup: there is
// no HTML parsing of data anywhere in the console.

// el("td", {class: "x"}, "text", childNode, ...): strings become text nodes.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "onclick" || k === "oninput" || k === "onchange" || k === "onsubmit") {
      node.addEventListener(k.slice(2), v);
    } else if (k === "href") {
      // Only the console's own hash routes: data never becomes a javascript: link.
      node.setAttribute("href", String(v).startsWith("#/") ? String(v) : "#/");
    } else {
      node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// A time in the viewer's local time, with UTC in the title (shown on hover).
export function when(t) {
  if (t === undefined || t === null || t === "") return el("span", {class: "muted"}, "-");
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (isNaN(d.getTime())) return el("span", {}, String(t));
  const iso = d.toISOString();
  return el("time", {datetime: iso, title: "UTC " + iso.replace("T", " ").replace("Z", "")},
            d.toLocaleString());
}

export function pretty(value) {
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch (e) { return value; }
  }
  return JSON.stringify(value, null, 2);
}

export function pre(value, cls) {
  return el("pre", {class: cls}, pretty(value));
}

export function ago(seconds) {
  if (!seconds || seconds < 0) return "-";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

// Hash routes: "#/did?q=..." -> {view: "did", params: URLSearchParams}.
export function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const i = h.indexOf("?");
  return {view: (i < 0 ? h : h.slice(0, i)) || "overview",
          params: new URLSearchParams(i < 0 ? "" : h.slice(i + 1))};
}

export function link(view, params) {
  const q = new URLSearchParams(params || {}).toString();
  return "#/" + view + (q ? "?" + q : "");
}

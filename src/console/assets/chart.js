// chart.js: a small line chart drawn as SVG by the console itself (no chart
// library). points: [[t, value], ...].
const NS = "http://www.w3.org/2000/svg";

export function lineChart(points, label) {
  const w = 300, h = 80, pad = 4;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const last = points.length ? points[points.length - 1][1] : 0;
  const title = document.createElementNS(NS, "title");
  title.textContent = `${label}: latest ${fmt(last)} (last hour)`;
  svg.appendChild(title);
  if (points.length < 2) {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", "8"); t.setAttribute("y", "44"); t.setAttribute("fill", "#5b6676");
    t.setAttribute("font-size", "12");
    t.textContent = "collecting samples (one every 10 s)";
    svg.appendChild(t);
    return svg;
  }
  const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
  let max = 0;
  for (const p of points) max = Math.max(max, p[1]);
  if (max <= 0) max = 1;
  const pts = points.map(([t, v]) => {
    const x = pad + ((t - t0) / Math.max(1e-9, t1 - t0)) * (w - 2 * pad);
    const y = h - pad - (v / max) * (h - 2 * pad);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.appendChild(line);
  const m = document.createElementNS(NS, "text");
  m.setAttribute("x", String(w - 4)); m.setAttribute("y", "12"); m.setAttribute("fill", "#5b6676");
  m.setAttribute("font-size", "10"); m.setAttribute("text-anchor", "end");
  m.textContent = "max " + fmt(max);
  svg.appendChild(m);
  return svg;
}

function fmt(v) {
  return Math.abs(v) >= 100 ? String(Math.round(v)) : (Math.round(v * 100) / 100).toString();
}

// The dashboard's renderer: reads the page's JSON (embedded, then refetched), writes text and an SVG chart.
// Text only goes in through textContent: nothing from the server is parsed as HTML.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const pct = (r) => (r === null || r === undefined ? "-" : (100 * r).toFixed(1) + " %");
  const num = (n) => (n === null || n === undefined ? "-" : String(n));
  const secs = (s) => (s === null || s === undefined ? "-" : s < 120 ? s.toFixed(0) + " s" : (s / 60).toFixed(1) + " min");

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function definitions(dl, pairs) {
    dl.replaceChildren();
    for (const [term, value, bad] of pairs) {
      dl.append(el("dt", {}, term));
      dl.append(el("dd", bad ? { class: "bad" } : {}, value));
    }
  }

  function chart(points) {
    const svg = $("chart");
    svg.replaceChildren();
    const W = 720, H = 220, left = 36, right = 40, top = 10, bottom = 24;
    const width = W - left - right, height = H - top - bottom;
    const most = Math.max(1, ...points.map((p) => p.requested));
    const step = width / Math.max(points.length, 1);
    const y = (v) => top + height - (v / most) * height;
    svg.append(el("svg:line", { class: "axis", x1: left, y1: top + height, x2: left + width, y2: top + height }));
    svg.append(el("svg:text", { x: 2, y: top + 8 }, String(most)));
    svg.append(el("svg:text", { x: 2, y: top + height }, "0"));
    svg.append(el("svg:text", { x: left + width + 4, y: top + 8 }, "100%"));
    svg.append(el("svg:text", { x: left + width + 4, y: top + height }, "0%"));
    const line = [];
    points.forEach((p, i) => {
      const x = left + i * step;
      if (p.requested > 0) {
        svg.append(el("svg:rect", { class: "requested", x: x, y: y(p.requested), width: Math.max(step - 1, 1),
                                    height: top + height - y(p.requested) }));
        svg.append(el("svg:rect", { class: "verified", x: x, y: y(p.verified), width: Math.max(step - 1, 1),
                                    height: top + height - y(p.verified) }));
        const rate = Math.min(1, p.verified / p.requested);
        const cx = (x + step / 2).toFixed(1), cy = (top + height - rate * height).toFixed(1);
        line.push((line.length ? "L" : "M") + cx + " " + cy);
        svg.append(el("svg:circle", { class: "rate-dot", cx: cx, cy: cy, r: 2 }));
      }
    });
    if (line.length) svg.append(el("svg:path", { class: "rate", d: line.join(" ") }));
    [0, Math.floor(points.length / 2), points.length - 1].forEach((i) => {
      if (!points[i]) return;
      const label = new Date(points[i].t * 1000).toISOString().slice(11, 16) + "Z";
      svg.append(el("svg:text", { x: left + i * step, y: H - 6 }, label));
    });
  }

  function render(data) {
    $("generated").textContent = new Date(data.generated_at * 1000).toISOString().slice(0, 19).replace("T", " ") + "Z";
    $("requested").textContent = num(data.totals.requested);
    $("verified").textContent = num(data.totals.verified);
    $("rate").textContent = pct(data.totals.conversion_rate);
    $("unmatched").textContent = num(data.totals.unmatched);
    chart(data.chart);

    const open = (data.alarms.open || []).concat(data.alarms.open_prefixes || []);
    const named = (a) => (a.prefix ? a.prefix + "... (+" + a.calling_code + ")" : "+" + a.calling_code);
    $("alarm-banner").hidden = open.length === 0;
    $("alarm-list").textContent = open
      .map((a) => named(a) + " at " + pct(a.rate) + " over " + a.sends + " sends (baseline " + pct(a.baseline) + ") since " + a.since)
      .join("; ");

    const body = $("countries").tBodies[0];
    body.replaceChildren();
    for (const c of data.countries) {
      const ranges = c.prefix_alarms || [];
      const alarms = (c.alarm ? ["ALARM since " + c.alarm_since] : [])
        .concat(ranges.map((a) => a.prefix + "... ALARM at " + pct(a.rate) + " since " + a.since));
      const row = el("tr", alarms.length ? { class: "alarm" } : {});
      for (const cell of ["+" + c.calling_code, num(c.requested), num(c.verified), pct(c.conversion_rate),
                          num(c.window_sends), pct(c.window_rate), pct(c.baseline), alarms.join("; ") || "-"]) {
        row.append(el("td", {}, cell));
      }
      body.append(row);
    }
    const w = data.alarms.window;
    $("window-note").textContent = w ? "alarm window " + w.from + " .. " + w.to + " (sends that old have had time to be verified)" : "";

    const p = data.pipeline;
    definitions($("pipeline"), [
      ["pending", num(p.pending), p.pending > 0 && p.oldest_pending_age_seconds > 300],
      ["oldest pending", secs(p.oldest_pending_age_seconds)],
      ["in flight", num(p.in_flight)],
      ["spooled", num(p.spooled)],
      ["delivered (24 h)", num(p.delivered)],
      ["retried (24 h)", num(p.retried), p.retried > 0],
      ["dead-lettered (24 h)", num(p.dead_lettered), p.dead_lettered > 0],
      ["dead letters now", num(p.dead), p.dead > 0],
      ["reports / min (last hour)", p.reports_per_minute.toFixed(2)],
      ["latency p50 / p95", (p.latency_p50_at_most === null ? "-" : "≤ " + p.latency_p50_at_most + " s") + " / " +
                            (p.latency_p95_at_most === null ? "-" : "≤ " + p.latency_p95_at_most + " s")],
      ["breaker", p.breaker_state, p.breaker_state !== "closed"],
      ["degraded", p.degraded ? "yes: no provider calls" : "no", p.degraded],
      ["last error", p.last_error || "-", !!p.last_error],
    ]);

    const prov = data.provider;
    $("provider-age").textContent = prov.figures
      ? "fetched " + (prov.fetched_at || "-") + " (" + secs(prov.age_seconds) + " ago)" + (prov.stale ? ", stale: " + prov.error : "") +
        (prov.time_zone ? "; the provider's hours are " + prov.time_zone : "")
      : prov.error || "no figures";
    const pairs = [];
    const walk = (value, prefix) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        for (const [k, v] of Object.entries(value)) walk(v, prefix ? prefix + "." + k : k);
      } else {
        pairs.push([prefix, Array.isArray(value) ? JSON.stringify(value) : num(value)]);
      }
    };
    if (prov.figures) walk(prov.figures, "");
    definitions($("provider"), pairs);
  }

  const url = document.body.dataset.jsonUrl;
  let data = JSON.parse($("initial-data").textContent);
  render(data);
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) { $("refresh-state").textContent = "refresh failed (" + response.status + ")"; return; }
      data = await response.json();
      render(data);
      $("refresh-state").textContent = "refreshes every " + data.refresh_seconds + " s";
    } catch (e) {
      $("refresh-state").textContent = "refresh failed: " + e.message;
    }
  }
  setInterval(refresh, 1000 * data.refresh_seconds);
})();

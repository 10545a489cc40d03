// Traffic charts on a plain <canvas>: requests per second (left scale) and p50/p99 latency in ms (right scale)
// over 5 minutes, an hour or a day, from the history the control plane keeps (/api/dashboard/traffic).
// Time without a sample (the endpoint stopped, no control plane ran) is a gap, never a line across it.
"use strict";

const TrafficChart = (() => {
  const RPS = "#3559d6";
  const LATENCY = "#e07a1f";
  const TAIL = "#b0413e";
  const GRID = "#e6e9ef";
  const LABEL = "#5f6b7a";
  const SWITCH = "#2f855a";
  const BANDS = 5;

  // A scale top that reads well: 1, 2, 5, 10, 20, 50, ...
  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) if (value <= step * power + 1e-9) return step * power;
    return 10 * power;
  }

  function number(value) {
    if (value >= 100) return Math.round(value).toString();
    if (value >= 10) return value.toFixed(1).replace(/\.0$/, "");
    return value.toFixed(2).replace(/\.?0+$/, "") || "0";
  }

  function line(ctx, points, key, x, y, color, maxGap, dashed) {
    ctx.strokeStyle = color;
    ctx.lineWidth = dashed ? 1.5 : 2;
    ctx.setLineDash(dashed ? [4, 3] : []);
    ctx.lineJoin = "round";
    ctx.beginPath();
    let drawing = false, previous = null;
    for (const point of points) {
      const value = point[key];
      // A gap: no calls to measure, or no sample at all for longer than a step.
      if (previous !== null && point.t - previous > maxGap) drawing = false;
      previous = point.t;
      if (value === null || value === undefined) { drawing = false; continue; }
      if (drawing) ctx.lineTo(x(point.t), y(value)); else ctx.moveTo(x(point.t), y(value));
      drawing = true;
    }
    ctx.stroke();
    ctx.setLineDash([]);
    // A lone point between gaps would be invisible as a line; mark every point lightly.
    ctx.fillStyle = color;
    for (const point of points) {
      if (point[key] === null || point[key] === undefined) continue;
      ctx.beginPath();
      ctx.arc(x(point.t), y(point[key]), 1.8, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  const latencyOf = (p) => (p.p50_ms !== null && p.p50_ms !== undefined ? p.p50_ms : p.latency_ms);

  // data: the server's answer ({seconds, step, now, ...}); points: [{t, rps, p50_ms, p99_ms, ...}], oldest first;
  // marks: [{t, revision}], when a revision began serving (an update or a rollback): a vertical line each.
  function draw(canvas, points, data, marks) {
    const windowSeconds = data.seconds, now = data.now;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";

    const pad = { left: 38, right: 44, top: 8, bottom: 20 };
    const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    const start = now - windowSeconds;
    const rpsMax = niceMax(Math.max(0, ...points.map((p) => p.rps || 0)));
    const latMax = niceMax(Math.max(0, ...points.map((p) => Math.max(p.p99_ms || 0, latencyOf(p) || 0))));
    const x = (t) => pad.left + ((t - start) / windowSeconds) * plotW;
    const yR = (v) => pad.top + plotH - (v / rpsMax) * plotH;
    const yL = (v) => pad.top + plotH - (v / latMax) * plotH;

    // Grid and scales: five bands (tops of 1, 2 or 5 give round labels), requests/s left, latency right.
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.fillStyle = LABEL;
    for (let i = 0; i <= BANDS; i++) {
      const yy = Math.round(pad.top + (plotH * i) / BANDS) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.left, yy); ctx.lineTo(pad.left + plotW, yy); ctx.stroke();
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      ctx.fillText(number(rpsMax * (1 - i / BANDS)), pad.left - 6, yy);
      ctx.textAlign = "left";
      ctx.fillText(number(latMax * (1 - i / BANDS)), pad.left + plotW + 6, yy);
    }
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(windowSeconds >= 3600 ? `-${Math.round(windowSeconds / 3600)} h` : `-${Math.round(windowSeconds / 60)} min`,
                 pad.left, height - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", pad.left + plotW, height - 4);

    const visible = points.filter((p) => p.t >= start);
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top - 2, plotW, plotH + 4);
    ctx.clip();
    const maxGap = data.step * 1.5 + (data.interval || 5);
    const withLatency = visible.map((p) => ({ t: p.t, latency: latencyOf(p), p99: p.p99_ms }));
    line(ctx, withLatency, "p99", x, yL, TAIL, maxGap, true);
    line(ctx, withLatency, "latency", x, yL, LATENCY, maxGap, false);
    line(ctx, visible, "rps", x, yR, RPS, maxGap, false);
    ctx.restore();
    ctx.strokeStyle = SWITCH;
    ctx.fillStyle = SWITCH;
    ctx.lineWidth = 1;
    ctx.setLineDash([2, 2]);
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    for (const mark of (marks || []).filter((m) => m.t >= start && m.t <= now)) {
      const xx = Math.round(x(mark.t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xx, pad.top); ctx.lineTo(xx, pad.top + plotH); ctx.stroke();
      ctx.fillText(`r${mark.revision}`, xx + 3, pad.top);
    }
    ctx.setLineDash([]);
  }

  // The switches in words, for the line under the chart: "revision 2 began serving at 12:01:02".
  function switches(marks, data) {
    const shown = (marks || []).filter((m) => m.t >= data.now - data.seconds);
    return shown.map((m) => `revision ${m.revision} began serving at ${new Date(m.t * 1000).toLocaleTimeString(undefined, { hour12: false })}`).join(" · ");
  }

  // "1 request", "2 requests", "0.5 requests": the singular only for exactly one.
  function plural(value, one, many) {
    return `${number(value)} ${Number(number(value)) === 1 ? one : many}`;
  }

  const SPANS = { "5m": "the last 5 minutes", "1h": "the last hour", "24h": "the last 24 hours" };

  // The reading under a chart in words, for people and screen readers alike: the span's totals, then now.
  function summary(points, data) {
    const span = SPANS[data.span] || "this span";
    if (!points.length) return `No traffic recorded in ${span}.`;
    let calls = 0, errors = 0;
    for (const p of points) { calls += p.requests || 0; errors += p.errors || 0; }
    const parts = [`${plural(calls, "request", "requests")} in ${span}`];
    if (errors) parts.push(plural(errors, "error", "errors"));
    const last = points[points.length - 1];
    const fresh = data.now - last.t <= data.step * 1.5 + (data.interval || 5);
    parts.push(fresh ? `now ${plural(last.rps, "request", "requests")}/s` : "no samples lately");
    const withCalls = points.filter((p) => p.requests);
    const recent = withCalls[withCalls.length - 1];
    if (recent && recent.p50_ms !== null && recent.p50_ms !== undefined) {
      parts.push(`p50 ${number(recent.p50_ms)} ms, p99 ${number(recent.p99_ms)} ms`);
    } else if (recent && recent.latency_ms !== null && recent.latency_ms !== undefined) {
      parts.push(`${number(recent.latency_ms)} ms mean latency`);
    }
    return parts.join(" · ") + ".";
  }

  return { draw, summary, plural, switches, number };
})();

// Poll the traffic series every few seconds and redraw; `query()` says what to ask for (job, span), and
// `render(data)` gets the server's answer. Returns `refresh()`, to ask at once (a span was picked).
function pollTraffic(query, render) {
  let timer = null;
  async function tick() {
    clearTimeout(timer);
    try {
      const url = "/api/dashboard/traffic?" + new URLSearchParams(query());
      const data = await TrainML.api("GET", url);
      render(data);
      timer = setTimeout(tick, data.interval * 1000);
    } catch (err) {
      timer = setTimeout(tick, 10000);
    }
  }
  tick();
  return tick;
}

// The 5 min / 1 h / 24 h picker: buttons with aria-pressed; calls `onPick(span)` when one is chosen.
function spanPicker(container, onPick) {
  let span = "5m";
  if (container) {
    for (const button of container.querySelectorAll("button[data-span]")) {
      button.addEventListener("click", () => {
        span = button.dataset.span;
        for (const b of container.querySelectorAll("button[data-span]")) b.setAttribute("aria-pressed", String(b === button));
        onPick(span);
      });
    }
  }
  return () => span;
}

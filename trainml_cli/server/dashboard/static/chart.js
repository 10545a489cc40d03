// Traffic charts on a plain <canvas>: requests per second and errors per second (left scale, "calls/s") and p50/p99
// latency (right scale, "ms") over 5 minutes, an hour or a day, from the history the control plane keeps
// (/api/dashboard/traffic). Split by route, requests/s is one line per route. Time without a sample (the endpoint
// stopped, no control plane ran) is a gap, never a line across it. The legend is drawn from the same list of
// series as the lines; pointing at the chart (or focusing it and pressing the arrow keys) shows a tooltip with
// every series' value at the nearest point.
"use strict";

const TrafficChart = (() => {
  const RPS = "#3559d6";
  const ERRORS = "#c23434";
  const LATENCY = "#e07a1f";
  const TAIL = "#b0413e";
  const GRID = "#e6e9ef";
  const LABEL = "#5f6b7a";
  const SWITCH = "#2f855a";
  const ROUTE_COLORS = ["#3559d6", "#0f8b8d", "#7b4fd0", "#2f855a", "#a15c00", "#c2185b"];
  const BANDS = 5;
  const drawn = new WeakMap(); // canvas -> what the tooltip needs of its latest drawing

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

  function line(ctx, points, get, x, y, color, maxGap, dashed) {
    ctx.strokeStyle = color;
    ctx.lineWidth = dashed ? 1.5 : 2;
    ctx.setLineDash(dashed ? [4, 3] : []);
    ctx.lineJoin = "round";
    ctx.beginPath();
    let drawing = false, previous = null;
    for (const point of points) {
      const value = get(point);
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
      const value = get(point);
      if (value === null || value === undefined) continue;
      ctx.beginPath();
      ctx.arc(x(point.t), y(value), 1.8, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  const latencyOf = (p) => (p.p50_ms !== null && p.p50_ms !== undefined ? p.p50_ms : p.latency_ms);
  const present = (v) => v !== null && v !== undefined;

  // The series a chart shows, in legend order: {label, color, dashed, axis: "calls"|"ms", get(point), unit}.
  // Errors (4xx and 5xx answers) are a series once the span holds one; split by route, one requests/s per route.
  function seriesOf(points, byRoute) {
    const list = [];
    if (byRoute) {
      const labels = [...new Set(points.flatMap((p) => Object.keys(p.routes || {})))].sort();
      labels.forEach((label, i) => list.push({
        label: `${label} requests/s`, route: label, color: ROUTE_COLORS[i % ROUTE_COLORS.length], axis: "calls",
        unit: "/s", get: (p) => (p.routes && p.routes[label] ? p.routes[label].rps : (p.requests !== undefined ? 0 : null)),
      }));
    }
    if (!byRoute || !list.length) list.push({ label: "requests/s", color: RPS, axis: "calls", unit: "/s", get: (p) => p.rps });
    if (points.some((p) => (p.error_rps || 0) > 0)) {
      list.push({ label: "errors/s", color: ERRORS, axis: "calls", unit: "/s", get: (p) => (present(p.error_rps) ? p.error_rps : null) });
    }
    list.push({ label: "p50 ms", color: LATENCY, axis: "ms", unit: " ms", get: latencyOf });
    list.push({ label: "p99 ms", color: TAIL, axis: "ms", unit: " ms", dashed: true, get: (p) => p.p99_ms });
    return list;
  }

  // The legend, from the series drawn: one swatch style for all (a short line in the series' color, dashed
  // where the line is).
  function legend(container, series) {
    if (!container) return;
    const items = series.map((s) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.dataset.series = s.label;
      const swatch = document.createElement("i");
      swatch.className = "swatch";
      swatch.style.borderTopColor = s.color;
      swatch.style.borderTopStyle = s.dashed ? "dashed" : "solid";
      item.append(swatch, s.label);
      return item;
    });
    container.replaceChildren(...items);
  }

  // card: the element holding the canvas, its .chart-legend and (made here) its tooltip; job: the server's
  // entry for one endpoint ({points, switches}); data: the server's answer ({seconds, step, now, ...});
  // options.byRoute: requests/s per route. Switches (an update or a rollback) are a vertical line each.
  function draw(card, job, data, options = {}) {
    const canvas = card.querySelector("canvas");
    const points = job.points || [], marks = job.switches || [];
    const windowSeconds = data.seconds, now = data.now;
    const start = now - windowSeconds;
    const visible = points.filter((p) => p.t >= start);
    const series = seriesOf(visible, options.byRoute);
    legend(card.querySelector(".chart-legend"), series);
    hook(card, canvas);
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

    const pad = { left: 52, right: 58, top: 8, bottom: 34 };
    const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    const callsMax = niceMax(Math.max(0, ...series.filter((s) => s.axis === "calls").flatMap((s) => visible.map((p) => s.get(p) || 0))));
    const msMax = niceMax(Math.max(0, ...series.filter((s) => s.axis === "ms").flatMap((s) => visible.map((p) => s.get(p) || 0))));
    const x = (t) => pad.left + ((t - start) / windowSeconds) * plotW;
    const y = { calls: (v) => pad.top + plotH - (v / callsMax) * plotH, ms: (v) => pad.top + plotH - (v / msMax) * plotH };

    // Grid and scales: five bands (tops of 1, 2 or 5 give round labels), calls/s left, latency right.
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.fillStyle = LABEL;
    for (let i = 0; i <= BANDS; i++) {
      const yy = Math.round(pad.top + (plotH * i) / BANDS) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.left, yy); ctx.lineTo(pad.left + plotW, yy); ctx.stroke();
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      ctx.fillText(number(callsMax * (1 - i / BANDS)), pad.left - 6, yy);
      ctx.textAlign = "left";
      ctx.fillText(number(msMax * (1 - i / BANDS)), pad.left + plotW + 6, yy);
    }
    // Axis titles: what each scale counts, and the time axis (ending at "now", the same in every span).
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(windowSeconds >= 3600 ? `-${Math.round(windowSeconds / 3600)} h` : `-${Math.round(windowSeconds / 60)} min`,
                 pad.left, pad.top + plotH + 14);
    ctx.textAlign = "right";
    ctx.fillText("now", pad.left + plotW, pad.top + plotH + 14);
    ctx.textAlign = "center";
    ctx.fillText("time", pad.left + plotW / 2, height - 4);
    for (const [title, xx, turn] of [["calls/s", 11, -Math.PI / 2], ["latency, ms", width - 11, Math.PI / 2]]) {
      ctx.save();
      ctx.translate(xx, pad.top + plotH / 2);
      ctx.rotate(turn);
      ctx.textBaseline = "middle";
      ctx.fillText(title, 0, 0);
      ctx.restore();
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top - 2, plotW, plotH + 4);
    ctx.clip();
    const maxGap = data.step * 1.5 + (data.interval || 5);
    for (const s of series.slice().reverse()) line(ctx, visible, s.get, x, y[s.axis], s.color, maxGap, s.dashed);
    ctx.restore();
    ctx.strokeStyle = SWITCH;
    ctx.fillStyle = SWITCH;
    ctx.lineWidth = 1;
    ctx.setLineDash([2, 2]);
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    for (const mark of marks.filter((m) => m.t >= start && m.t <= now)) {
      const xx = Math.round(x(mark.t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xx, pad.top); ctx.lineTo(xx, pad.top + plotH); ctx.stroke();
      ctx.fillText(`r${mark.revision}`, xx + 3, pad.top);
    }
    ctx.setLineDash([]);
    drawn.set(canvas, { visible, series, x, pad, plotW, width, data });
    const tip = card.querySelector(".chart-tip");
    if (tip && !tip.hidden && tip.dataset.index) tipAt(card, canvas, Math.min(Number(tip.dataset.index), visible.length - 1));
  }

  // -- the tooltip -----------------------------------------------------------------------------------------------

  function timeOf(t) {
    return new Date(t * 1000).toLocaleTimeString(undefined, { hour12: false });
  }

  function tipAt(card, canvas, index) {
    const state = drawn.get(canvas);
    let tip = card.querySelector(".chart-tip");
    if (!state || index < 0 || !state.visible.length) { if (tip) tip.hidden = true; return; }
    const point = state.visible[index];
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.setAttribute("role", "status");
      canvas.after(tip);
    }
    const rows = [Object.assign(document.createElement("strong"), { textContent: timeOf(point.t) })];
    for (const s of state.series) {
      const value = s.get(point);
      const row = document.createElement("span");
      row.className = "tip-row";
      const swatch = document.createElement("i");
      swatch.className = "swatch";
      swatch.style.borderTopColor = s.color;
      swatch.style.borderTopStyle = s.dashed ? "dashed" : "solid";
      row.append(swatch, `${s.label}: ${present(value) ? number(value) : "—"}`);
      rows.push(row);
    }
    if (point.client_errors || point.errors) {
      rows.push(Object.assign(document.createElement("span"), {
        className: "tip-row", textContent: `${point.client_errors || 0} 4xx, ${point.errors || 0} 5xx answers`,
      }));
    }
    tip.replaceChildren(...rows);
    tip.dataset.index = String(index);
    tip.hidden = false;
    // Beside the point, kept inside the card: to its left past the middle.
    const px = state.x(point.t);
    const left = canvas.offsetLeft + (px > state.pad.left + state.plotW / 2 ? px - tip.offsetWidth - 10 : px + 10);
    const room = canvas.offsetLeft + canvas.offsetWidth - tip.offsetWidth; // never past the card's edge
    tip.style.left = `${Math.max(0, Math.min(left, room))}px`;
    tip.style.top = `${canvas.offsetTop + 4}px`;
  }

  function nearest(canvas, clientX) {
    const state = drawn.get(canvas);
    if (!state || !state.visible.length) return -1;
    const at = clientX - canvas.getBoundingClientRect().left;
    let best = 0;
    state.visible.forEach((p, i) => { if (Math.abs(state.x(p.t) - at) < Math.abs(state.x(state.visible[best].t) - at)) best = i; });
    return best;
  }

  // Pointer (mouse, pen or touch) and keyboard, bound once per canvas.
  function hook(card, canvas) {
    if (canvas.dataset.tips) return;
    canvas.dataset.tips = "1";
    canvas.tabIndex = 0;
    const hide = () => { const tip = card.querySelector(".chart-tip"); if (tip) tip.hidden = true; };
    canvas.addEventListener("pointermove", (event) => tipAt(card, canvas, nearest(canvas, event.clientX)));
    canvas.addEventListener("pointerdown", (event) => tipAt(card, canvas, nearest(canvas, event.clientX)));
    canvas.addEventListener("pointerleave", hide);
    canvas.addEventListener("blur", hide);
    canvas.addEventListener("keydown", (event) => {
      const state = drawn.get(canvas);
      if (!state || !state.visible.length) return;
      const tip = card.querySelector(".chart-tip");
      const current = tip && !tip.hidden ? Number(tip.dataset.index) : state.visible.length;
      if (event.key === "ArrowLeft") tipAt(card, canvas, Math.max(0, current - 1));
      else if (event.key === "ArrowRight") tipAt(card, canvas, Math.min(state.visible.length - 1, current + 1));
      else if (event.key === "Escape") hide();
      else return;
      event.preventDefault();
    });
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
  function summary(points, data, latest) {
    const span = SPANS[data.span] || "this span";
    if (!points.length) return `No traffic recorded in ${span}.`;
    let calls = 0, errors = 0;
    for (const p of points) { calls += p.requests || 0; errors += p.errors || 0; }
    const parts = [`${plural(calls, "request", "requests")} in ${span}`];
    let failed = 0;
    for (const p of points) failed += p.client_errors || 0;
    if (errors) parts.push(plural(errors, "error", "errors"));
    if (failed) parts.push(`${number(failed)} 4xx`);
    // "Now" is the latest reading, whatever the span: the 5 min and 1 h views say the same.
    const last = latest || points[points.length - 1];
    const fresh = data.now - last.t <= (latest ? 0 : data.step * 1.5) + (data.interval || 5) * 2;
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

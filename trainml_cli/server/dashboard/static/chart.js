// Traffic charts on a plain <canvas>: requests per second (left scale) and mean latency in ms (right scale)
// over the last minutes, from the points /api/dashboard/traffic computes out of the runtime's counters.
"use strict";

const TrafficChart = (() => {
  const RPS = "#3559d6";
  const LATENCY = "#e07a1f";
  const GRID = "#e6e9ef";
  const LABEL = "#5f6b7a";
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

  function line(ctx, points, key, x, y, color) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let drawing = false;
    for (const point of points) {
      const value = point[key];
      if (value === null || value === undefined) { drawing = false; continue; } // a gap: no calls to measure
      if (drawing) ctx.lineTo(x(point.t), y(value)); else ctx.moveTo(x(point.t), y(value));
      drawing = true;
    }
    ctx.stroke();
    // A lone point between gaps would be invisible as a line; mark every point lightly.
    ctx.fillStyle = color;
    for (const point of points) {
      if (point[key] === null || point[key] === undefined) continue;
      ctx.beginPath();
      ctx.arc(x(point.t), y(point[key]), 1.8, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  // points: [{t: unix seconds, rps: number, latency_ms: number|null}], oldest first; now: unix seconds.
  function draw(canvas, points, windowSeconds, now) {
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
    const latMax = niceMax(Math.max(0, ...points.map((p) => p.latency_ms || 0)));
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
    ctx.fillText(`-${Math.round(windowSeconds / 60)} min`, pad.left, height - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", pad.left + plotW, height - 4);

    const visible = points.filter((p) => p.t >= start);
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top - 2, plotW, plotH + 4);
    ctx.clip();
    line(ctx, visible, "latency_ms", x, yL, LATENCY);
    line(ctx, visible, "rps", x, yR, RPS);
    ctx.restore();
  }

  // The one-line reading under a chart: the latest values in words, for people and screen readers alike.
  function summary(points) {
    const last = points[points.length - 1];
    if (!last) return "Waiting for the first samples…";
    const latency = last.latency_ms === null || last.latency_ms === undefined ? "no calls" : `${number(last.latency_ms)} ms mean latency`;
    return `Now: ${number(last.rps)} requests/s, ${latency}.`;
  }

  return { draw, summary };
})();

// Poll the traffic series every few seconds and redraw; `render(series, now)` gets the server's answer.
function pollTraffic(query, render) {
  let timer = null;
  async function tick() {
    try {
      const url = "/api/dashboard/traffic" + (query ? "?" + new URLSearchParams(query) : "");
      const data = await TrainML.api("GET", url);
      render(data);
      timer = setTimeout(tick, data.interval * 1000);
    } catch (err) {
      timer = setTimeout(tick, 10000);
    }
  }
  tick();
  return () => clearTimeout(timer);
}

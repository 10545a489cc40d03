// The endpoint list: rows kept live from the server's job events, and a traffic chart per running endpoint.
"use strict";

(() => {
  const rows = document.getElementById("job-rows");
  const rowTemplate = document.getElementById("job-row-template");
  const empty = document.getElementById("no-jobs");
  const charts = document.getElementById("charts");
  const chartTemplate = document.getElementById("chart-template");
  const noCharts = document.getElementById("no-charts");
  let lastTraffic = null;

  function rowFor(job) {
    let row = rows.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
    if (!row) {
      row = rowTemplate.content.firstElementChild.cloneNode(true);
      row.dataset.jobId = job.id;
      rows.appendChild(row);
    }
    return row;
  }

  function showJobs(jobs) {
    const seen = new Set();
    for (const job of jobs) {
      seen.add(job.id);
      TrainML.fill(rowFor(job), job);
    }
    for (const row of [...rows.children]) if (!seen.has(row.dataset.jobId)) row.remove();
    empty.classList.toggle("hidden", jobs.length > 0);
  }

  // -- charts ---------------------------------------------------------------------------------------------------

  function cardFor(id, name) {
    let card = charts.querySelector(`[data-job-id="${CSS.escape(id)}"]`);
    if (!card) {
      card = chartTemplate.content.firstElementChild.cloneNode(true);
      card.dataset.jobId = id;
      charts.appendChild(card);
    }
    const link = card.querySelector('[data-field="link"]');
    link.textContent = name;
    link.href = `${TrainML.ROOT}/jobs/${encodeURIComponent(id)}`;
    card.querySelector("canvas").setAttribute("aria-label", `Requests per second and latency of ${name}`);
    return card;
  }

  // A chart for every running endpoint, and for a stopped one whose traffic still falls in the span.
  function showTraffic(data) {
    lastTraffic = data;
    const shown = data.jobs.filter((j) => j.status === TrainML.STATUS.running || j.points.length);
    const ids = new Set(shown.map((j) => j.id));
    for (const card of [...charts.children]) if (!ids.has(card.dataset.jobId)) card.remove();
    for (const job of shown) {
      const card = cardFor(job.id, job.name);
      TrafficChart.draw(card, job, data);
      card.querySelector('[data-field="now"]').textContent = TrafficChart.summary(job.points, data, job.latest);
    }
    noCharts.classList.toggle("hidden", shown.length > 0);
  }

  TrainML.localizeTimes(rows);
  TrainML.bindActions((id) => {
    const row = rows.querySelector(`tr[data-job-id="${CSS.escape(id)}"]`);
    if (row) row.remove();
    empty.classList.toggle("hidden", rows.children.length > 0);
  });
  TrainML.follow(null, { jobs: showJobs });
  TrainML.tickRunTimes();
  const span = spanPicker(document.getElementById("span"), () => refresh());
  const refresh = pollTraffic(() => ({ span: span() }), showTraffic);
  window.addEventListener("resize", () => lastTraffic && showTraffic(lastTraffic));
})();

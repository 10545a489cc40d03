// Details: the head, facts and reason follow the job live; the status history is re-read when the status moves;
// the traffic chart shows while the endpoint runs.
"use strict";

(() => {
  const jobId = document.getElementById("job-head").dataset.jobId;
  const history = document.getElementById("history");
  const noHistory = document.getElementById("no-history");
  const reason = document.getElementById("job-reason");
  const traffic = document.getElementById("traffic");
  const canvas = traffic.querySelector("canvas");
  let lastStatus = null;
  let lastTraffic = null;

  function cell(label, child) {
    const td = document.createElement("td");
    td.dataset.label = label;
    td.appendChild(child);
    return td;
  }

  function text(value) {
    return document.createTextNode(value || "");
  }

  async function refreshHistory() {
    const data = await TrainML.api("GET", `/api/dashboard/jobs/${encodeURIComponent(jobId)}/history`);
    const rows = data.history.map((item) => {
      const tr = document.createElement("tr");
      const time = document.createElement("time");
      time.setAttribute("datetime", item.time);
      time.textContent = TrainML.localTime(item.time, true);
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.dataset.status = item.status;
      badge.textContent = item.status;
      tr.append(cell("Time", time), cell("Status", badge), cell("Detail", text(item.detail)));
      return tr;
    });
    history.replaceChildren(...rows);
    noHistory.classList.toggle("hidden", rows.length > 0);
  }

  function onJob(job) {
    reason.textContent = job.status === "failed" ? job.reason || "" : "";
    traffic.classList.toggle("hidden", job.status !== "running");
    if (lastStatus !== null && lastStatus !== job.status) refreshHistory().catch(() => {});
    lastStatus = job.status;
  }

  function draw(data) {
    lastTraffic = data;
    const series = data.jobs[0];
    if (!series || traffic.classList.contains("hidden")) return;
    TrafficChart.draw(canvas, series.points, data.window, data.now);
    traffic.querySelector('[data-field="now"]').textContent = TrafficChart.summary(series.points);
  }

  TrainML.localizeTimes(document, true);
  followJobHead(onJob);
  pollTraffic({ job: jobId }, draw);
  window.addEventListener("resize", () => lastTraffic && draw(lastTraffic));
})();

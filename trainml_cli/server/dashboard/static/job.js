// Details: the head, facts and reason follow the job live; the status history is re-read when the status moves;
// the traffic chart shows while the endpoint runs, with a marker where another revision began serving, split by
// route on demand.
"use strict";

(() => {
  const jobId = document.getElementById("job-head").dataset.jobId;
  const history = document.getElementById("history");
  const noHistory = document.getElementById("no-history");
  const reason = document.getElementById("job-reason");
  const failure = document.getElementById("failure");
  const reasonRest = document.getElementById("reason-rest");
  const reasonMore = document.getElementById("reason-more");
  const size = document.querySelector('[data-field="model_size"]');
  const traffic = document.getElementById("traffic");
  // Split by route: requests/s one line per route (the errors and latency lines stay whole).
  const byRoute = document.getElementById("by-route");
  // The status the history was rendered with: any other status seen later means the history has grown.
  let lastStatus = document.querySelector('#job-head [data-field="status"]').dataset.status;
  let lastTraffic = null;

  function cell(label, child) {
    const td = document.createElement("td");
    td.dataset.label = label;
    td.appendChild(child);
    return td;
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
      const detail = document.createElement("td");
      detail.dataset.label = "Detail";
      if (item.detail) detail.textContent = item.detail; // left empty otherwise, so narrow screens can hide it
      tr.append(cell("Time", time), cell("Status", badge), detail);
      return tr;
    });
    history.replaceChildren(...rows);
    noHistory.classList.toggle("hidden", rows.length > 0);
  }

  // The environment panel as pages.py:environment_facts renders it: the key, Python version and requirements file
  // used arrive once the environment is built (before the job is running), so follow the record.
  const environment = document.getElementById("environment");

  function showEnvironment(env) {
    if (!env) return;
    const set = (name, text) => { environment.querySelector(`[data-env="${name}"]`).textContent = text; };
    const interpreter = env.interpreter;
    const packages = (env.packages && env.packages.pip) || [];
    const version = env.python_version || (interpreter && interpreter.version) || environment.dataset.defaultPython;
    set("python", version ? version + (interpreter ? "" : " (default)") : "the default");
    set("packages", packages.length ? packages.join(", ") : "—");
    if (env.key) {
      set("key", env.key);
      set("requirements", env.requirements_file || "none");
    } else {
      set("key", packages.length || env.requirements || interpreter ? "not built yet" : "none: the control plane's Python");
      set("requirements", env.requirements || "requirements.txt at the model root, if there is one");
    }
    const note = environment.querySelector('[data-env="note"]');
    note.textContent = env.note || "";
    note.hidden = !env.note;
  }

  function onJob(job) {
    showEnvironment(job.environment);
    // The reason's first line is the error; the output lines after it are one click away, and so is the log.
    const [headline, ...rest] = (job.status === TrainML.STATUS.failed && job.reason ? job.reason : "").split("\n");
    failure.hidden = job.status !== TrainML.STATUS.failed;
    reason.textContent = headline;
    reasonRest.textContent = rest.join("\n");
    reasonMore.hidden = !rest.length;
    if (job.model && job.model.size) size.textContent = TrainML.fileSize(job.model.size);
    if (lastStatus !== job.status) refreshHistory().catch(() => {});
    if (lastStatus !== TrainML.STATUS.running && job.status === TrainML.STATUS.running && lastTraffic) draw(lastTraffic);
    lastStatus = job.status;
  }

  function draw(data) {
    lastTraffic = data;
    if (traffic.classList.contains("hidden")) return;
    const job = data.jobs[0] || { points: [], switches: [] };
    const points = job.points, marks = job.switches;
    TrafficChart.draw(traffic, job, data, { byRoute: byRoute.getAttribute("aria-pressed") === "true" });
    traffic.querySelector('[data-field="now"]').textContent = TrafficChart.summary(points, data, job.latest);
    // Each switch to another revision, in words as well as a marker on the chart.
    const switched = traffic.querySelector('[data-field="switches"]');
    switched.textContent = TrafficChart.switches(marks, data);
    switched.hidden = !switched.textContent;
    // Streaming routes: what the latest reading of the endpoint's metrics says (absent until it has streamed).
    const streams = data.jobs[0] ? data.jobs[0].streams : null;
    const streamLine = traffic.querySelector('[data-field="streams"]');
    streamLine.hidden = !streams;
    if (streams) {
      const parts = [`Streams: ${streams.open} open`, `${TrafficChart.plural(streams.items, "item", "items")} sent`];
      if (streams.first_item_ms !== null) parts.push(`first item after ${TrafficChart.number(streams.first_item_ms)} ms on average`);
      streamLine.textContent = parts.join(" · ") + ".";
    }
    // The live replicas, as Ray Serve or the local autoscaler reports them: the count moves as it scales.
    const replicas = data.jobs[0] ? data.jobs[0].replicas : null;
    const line = traffic.querySelector('[data-field="replicas"]');
    line.hidden = !replicas;
    if (replicas) {
      const running = replicas.filter((r) => r.state === "RUNNING").length;
      const others = replicas.length - running;
      line.textContent = `Replicas: ${running} running` + (others ? `, ${others} starting or stopping` : "")
        + (replicas.length ? "" : " (scaled to zero: the next call starts one)");
    }
  }

  TrainML.localizeTimes(document, true);
  followJobHead(onJob);
  const span = spanPicker(document.getElementById("span"), () => refresh());
  const refresh = pollTraffic(() => ({ job: jobId, span: span() }), draw);
  byRoute.addEventListener("click", () => {
    byRoute.setAttribute("aria-pressed", String(byRoute.getAttribute("aria-pressed") !== "true"));
    if (lastTraffic) draw(lastTraffic);
  });
  window.addEventListener("resize", () => lastTraffic && draw(lastTraffic));
})();

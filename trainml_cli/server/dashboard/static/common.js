// Shared by every dashboard page: API calls, live job updates, job actions, formatting and small UI helpers.
// User-provided text (names, log lines, errors) only ever reaches the page through textContent.
"use strict";

const TrainML = (() => {
  const ROOT = "/dashboard";
  // Status names come from the server's one enum (trainml_cli/states.py), via <body data-statuses>.
  const STATUSES = JSON.parse(document.body.dataset.statuses || "{}");
  const LIVE = new Set(STATUSES.live || []);
  const BILLED = new Set(STATUSES.billed || []);
  const FINAL = new Set(STATUSES.final || []);
  const STATUS = STATUSES.names || {}; // STATUS.running, STATUS.failed, ...: the enum's members by name

  // fetch with the dashboard's header (the server refuses cookie-authenticated changes without it) and one
  // error shape: an Error whose message is the server's, with .status and .body for callers that map fields.
  async function api(method, url, body) {
    const options = { method, headers: { "X-TrainML-Dashboard": "1", Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw Object.assign(new Error("The control plane does not answer; is it still running?"), { status: 0, body: null });
    }
    if (response.status === 401) {
      window.location.assign(ROOT + "/signed-out?expired=1");
      throw Object.assign(new Error("Your session has ended."), { status: 401, body: null });
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
    if (!response.ok) {
      const message = (data && data.message) || `${method} ${url} answered HTTP ${response.status}`;
      throw Object.assign(new Error(message), { status: response.status, body: data });
    }
    return data;
  }

  // -- formatting ----------------------------------------------------------------------------------------------

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}h ${pad(m)}m ${pad(s)}s` : `${m}m ${pad(s)}s`;
  }

  // As the pages' filesize filter writes it: "286 B", "26.5 KB".
  function fileSize(bytes) {
    let value = Number(bytes) || 0;
    for (const unit of ["B", "KB", "MB", "GB"]) {
      if (value < 1024 || unit === "GB") return unit === "B" ? `${Math.round(value)} B` : `${value.toFixed(1)} ${unit}`;
      value /= 1024;
    }
    return `${value.toFixed(1)} GB`;
  }

  function localTime(iso, withSeconds) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (isNaN(date)) return iso;
    const options = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    if (withSeconds) options.second = "2-digit";
    return date.toLocaleString(undefined, options);
  }

  // Server-rendered <time datetime=ISO> elements show UTC ISO text until this turns them into local time.
  function localizeTimes(root, withSeconds) {
    for (const node of (root || document).querySelectorAll("time[datetime]")) {
      if (node.getAttribute("datetime")) node.textContent = localTime(node.getAttribute("datetime"), withSeconds);
    }
  }

  // -- a job's fields and actions wherever they appear ----------------------------------------------------------

  // Run time keeps ticking between updates while the job is billed: the record's value plus the time since.
  const received = new Map(); // job id -> [record, time received]

  function runTime(job) {
    const entry = received.get(job.id);
    let seconds = job.run_time;
    if (entry && BILLED.has(job.status)) seconds += (Date.now() - entry[1]) / 1000;
    return seconds;
  }

  function fill(container, job) {
    received.set(job.id, [job, Date.now()]);
    if (pending && pending.id === job.id && pending.done.has(job.status)) toast(`${job.name} is ${job.status}.`);
    container.dataset.status = job.status;
    for (const node of container.querySelectorAll("[data-field]")) {
      switch (node.dataset.field) {
        case "name": node.textContent = job.name; node.href = `${ROOT}/jobs/${encodeURIComponent(job.id)}`; break;
        case "status": node.textContent = job.status; node.dataset.status = job.status; break;
        case "status-text": node.textContent = job.status; break;
        case "url": node.textContent = job.url || "—"; break;
        case "created": node.setAttribute("datetime", job.created); node.textContent = localTime(job.created); break;
        case "run_time": node.textContent = duration(runTime(job)); break;
        case "restarts": node.textContent = String(job.restarts); break;
        case "credits": node.textContent = Number(job.credits).toFixed(4); break;
        case "pid": node.textContent = job.pid ? String(job.pid) : "—"; break;
        case "auth": node.hidden = !(job.endpoint && job.endpoint.auth); break;
      }
    }
    // A failed endpoint has no URL to connect to and costs nothing per hour: no Connect, no hourly rate.
    for (const node of container.querySelectorAll("[data-unless-failed]")) node.hidden = job.status === STATUS.failed;
    for (const link of container.querySelectorAll("[data-link]")) {
      link.href = `${ROOT}/jobs/${encodeURIComponent(job.id)}/${link.dataset.link}`;
    }
    showActions(container, job);
  }

  function showActions(container, job) {
    const live = LIVE.has(job.status);
    const final = FINAL.has(job.status);
    for (const button of container.querySelectorAll("[data-action]")) {
      button.dataset.jobId = job.id;
      button.dataset.jobName = job.name;
      button.dataset.jobStatus = job.status;
      const action = button.dataset.action;
      button.hidden = (action === "stop" && !live) || (action === "start" && !final);
      const label = { stop: "Stop", start: "Start", remove: "Remove" }[action];
      button.setAttribute("aria-label", `${label} ${job.name}`);
    }
  }

  // Keep run times ticking on screen without waiting for the server.
  function tickRunTimes() {
    setInterval(() => {
      for (const [id, [job]] of received) {
        if (!BILLED.has(job.status)) continue;
        const selector = `[data-job-id="${CSS.escape(id)}"] [data-field="run_time"], body[data-job-id="${CSS.escape(id)}"] [data-field="run_time"]`;
        for (const node of document.querySelectorAll(selector)) node.textContent = duration(runTime(job));
      }
    }, 1000);
  }

  // One click handler for Stop, Start and Remove wherever they are on the page.
  function bindActions(onRemoved) {
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || !button.dataset.jobId) return;
      const id = encodeURIComponent(button.dataset.jobId);
      const name = button.dataset.jobName;
      const action = button.dataset.action;
      try {
        if (action === "remove") {
          const running = LIVE.has(button.dataset.jobStatus);
          const text = `Remove “${name}”? ` + (running ? "Its endpoint is stopped first. " : "") +
            "The job, its logs and its working copy are deleted; stored models stay.";
          if (!(await confirm(text, "Remove"))) return;
          button.disabled = true;
          await api("DELETE", `/api/jobs/${id}?force=${running ? "true" : "false"}`);
          toast(`Removed ${name}.`);
          if (onRemoved) onRemoved(button.dataset.jobId);
        } else {
          button.disabled = true;
          const answer = await api("POST", `/api/jobs/${id}/${action}`);
          // Shown until the job gets there (fill sees it), then said done: not a fixed 4 s that ends mid-action.
          const done = action === "stop" ? FINAL : new Set([STATUS.running, STATUS.failed]);
          const seen = [answer, (received.get(button.dataset.jobId) || [])[0]].find((job) => job && done.has(job.status));
          if (seen) {
            toast(`${name} is ${seen.status}.`);
          } else {
            pending = { id: button.dataset.jobId, done };
            toast(action === "stop" ? `Stopping ${name}…` : `Starting ${name}…`, { stay: true });
          }
        }
      } catch (err) {
        toast(err.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- live updates ---------------------------------------------------------------------------------------------

  // Server-sent events of job records: `jobs` (the full list, or one job with ?job=ID) whenever something a person
  // would see changes, and `removed`. EventSource reconnects by itself; the indicator says when it is down.
  function follow(query, handlers) {
    const url = "/api/dashboard/events" + (query ? "?" + new URLSearchParams(query) : "");
    const source = new EventSource(url);
    source.addEventListener("jobs", (event) => handlers.jobs(JSON.parse(event.data)));
    source.addEventListener("removed", (event) => {
      source.close();
      if (handlers.removed) handlers.removed(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) return; // a dropped connection: it reconnects by itself
      // Refused outright (an HTTP error, not a network one): an ended session goes to sign-in; else retry.
      const retry = () => setTimeout(() => follow(query, handlers), 3000);
      api("GET", "/api/jobs").then(retry, (err) => { if (err.status !== 401) retry(); });
    });
    return source;
  }

  // -- small UI helpers -----------------------------------------------------------------------------------------

  let toastTimer = null;
  let pending = null; // the Stop or Start whose toast stays until the job reaches {id, done: statuses}
  // Text to the clipboard (Connect's Copy buttons, the Requests tab's Copy as curl).
  async function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return;
      } catch (err) {
        // The browser may refuse the clipboard API (a policy, no permission): fall through to the old way.
      }
    }
    // Plain http on another host is not a secure context: copy from a selected, off-screen textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) throw new Error("copy refused");
  }

  function toast(message, { stay = false } = {}) {
    const node = document.getElementById("toast");
    if (!node) return;
    if (!stay) pending = null; // a newer message replaces the one that waited
    node.textContent = message;
    clearTimeout(toastTimer);
    // One that stays still goes within a minute, whatever happens to the job.
    toastTimer = setTimeout(() => { node.textContent = ""; pending = null; }, stay ? 60000 : 4000);
  }

  function confirm(text, okLabel, title) {
    const dialog = document.getElementById("confirm");
    if (!dialog || !dialog.showModal) return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-title").textContent = title || "Remove endpoint?";
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  return { ROOT, LIVE, FINAL, STATUS, api, copy, duration, fileSize, localTime, localizeTimes, fill, bindActions, follow, toast, confirm, tickRunTimes };
})();

// Every job page (details, connect, logs) has the same head: name, status badge and actions, kept live.
function followJobHead(onJob) {
  const head = document.getElementById("job-head");
  if (!head) return;
  const jobId = head.dataset.jobId;
  document.body.dataset.jobId = jobId;
  TrainML.bindActions(() => window.location.assign(TrainML.ROOT + "/"));
  TrainML.follow({ job: jobId }, {
    jobs: (jobs) => {
      const job = jobs[0];
      if (!job) return;
      TrainML.fill(document.body, job);
      if (onJob) onJob(job);
    },
    removed: () => window.location.assign(TrainML.ROOT + "/"),
  });
  TrainML.tickRunTimes();
}

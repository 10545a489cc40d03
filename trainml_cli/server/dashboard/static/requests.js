// Requests: the calls the endpoint captured (--capture RATE), newest first, re-read every few seconds through the
// REST API (GET /api/jobs/{id}/requests, as `trainml job requests`), filtered by status class, route and age.
// A row opens the call: its request and answer pretty-printed, "Copy as curl" (the server builds the line from
// what a replay sends; a keyed endpoint's key stays out of it) and "Replay" (the old and the new answer, and
// whether they differ, as `trainml job replay`). Captured text only ever reaches the page through textContent.
"use strict";

(() => {
  const jobId = document.getElementById("job-head").dataset.jobId;
  const base = `/api/jobs/${encodeURIComponent(jobId)}/requests`;
  const panel = document.getElementById("requests");
  const rows = document.getElementById("request-rows");
  const empty = document.getElementById("no-requests");
  const note = document.getElementById("requests-note");
  const off = document.getElementById("capture-off");
  const detail = document.getElementById("request-detail");
  const filters = { status: document.getElementById("filter-status"), route: document.getElementById("filter-route"),
                    since: document.getElementById("filter-since") };
  const POLL = 3000; // ms between looks for new calls
  const TAIL = 200; // calls listed at most
  let rate = Number(panel.dataset.rate || "0");
  let entries = [];
  let chosen = null; // the id of the call shown below the list
  let timer = null;

  const pretty = (value) => (value === undefined || value === null ? "—"
    : typeof value === "string" ? value : JSON.stringify(value, null, 2));
  const statusClass = (status) => `${String(status)[0]}xx`;

  function cell(label, child) {
    const td = document.createElement("td");
    td.dataset.label = label;
    td.append(child);
    return td;
  }

  function row(entry) {
    const tr = document.createElement("tr");
    tr.dataset.requestId = entry.id;
    if (entry.id === chosen) tr.setAttribute("aria-selected", "true");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "linklike";
    open.textContent = TrainML.localTime(entry.time, true);
    open.setAttribute("aria-label", `Open the call of ${open.textContent} (${entry.route}, ${entry.status})`);
    open.addEventListener("click", () => show(entry.id));
    const route = document.createElement("span");
    route.className = "mono";
    route.textContent = entry.route;
    const status = document.createElement("span");
    status.className = "code-badge";
    status.dataset.class = statusClass(entry.status);
    status.textContent = String(entry.status);
    const latency = document.createElement("span");
    latency.textContent = entry.latency_ms === undefined || entry.latency_ms === null ? "—" : `${entry.latency_ms} ms`;
    tr.append(cell("Time", open), cell("Route", route), cell("Status", status), cell("Latency", latency));
    return tr;
  }

  function query() {
    const params = new URLSearchParams({ tail: String(TAIL) });
    for (const [name, select] of Object.entries(filters)) if (select.value) params.set(name, select.value);
    return params;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const page = await TrainML.api("GET", `${base}?${query()}`);
      entries = page.requests.slice().reverse();
      rows.replaceChildren(...entries.map(row));
      const filtered = [...Object.values(filters)].some((s) => s.value);
      empty.hidden = entries.length > 0;
      empty.textContent = filtered ? "No captured call matches these filters."
        : rate ? "No call captured yet: calls show here moments after they are answered."
        : "No calls captured: capture is off for this endpoint.";
      const parts = [rate ? `Keeping ${Math.round(rate * 1000) / 10}% of calls` : "Capture is off", "newest first"];
      if (rate) parts.push("follows live");
      if (page.dropped) parts.push(`${page.dropped} sampled ${page.dropped === 1 ? "call" : "calls"} not kept (the writer was behind)`);
      note.textContent = parts.join(" · ");
    } catch (err) {
      note.textContent = err.message;
    }
    timer = setTimeout(refresh, POLL);
  }

  // -- one call ---------------------------------------------------------------------------------------------------

  const facts = document.getElementById("detail-facts");
  const curlLine = document.getElementById("curl-line");
  const curlHint = document.getElementById("curl-hint");
  const error = document.getElementById("detail-error");
  const replayed = document.getElementById("replayed");

  function fact(term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }

  function show(id) {
    const entry = entries.find((e) => e.id === id);
    if (!entry) return;
    chosen = id;
    for (const tr of rows.children) tr.toggleAttribute("aria-selected", tr.dataset.requestId === id);
    detail.hidden = false;
    detail.querySelector('[data-detail="id"]').textContent = entry.id;
    const items = [fact("Time", TrainML.localTime(entry.time, true)), fact("Route", entry.route),
                   fact("Status", String(entry.status)), fact("Latency", `${entry.latency_ms} ms`)];
    if (entry.queue_ms !== undefined && entry.queue_ms !== null) items.push(fact("Queued", `${entry.queue_ms} ms`));
    if (entry.batch_size) items.push(fact("Batch size", String(entry.batch_size)));
    if (entry.client) items.push(fact("Client", entry.client));
    if (entry.error) items.push(fact("Error", `${entry.error.kind || "error"}: ${entry.error.message || ""}`));
    facts.replaceChildren(...items.flat());
    document.getElementById("detail-request").textContent = pretty(entry.request);
    document.getElementById("detail-response").textContent = pretty(entry.response);
    curlLine.hidden = curlHint.hidden = replayed.hidden = true;
    error.textContent = "";
    detail.scrollIntoView({ block: "nearest" });
  }

  document.getElementById("copy-curl").addEventListener("click", async () => {
    error.textContent = "";
    try {
      const found = await TrainML.api("GET", `/api/dashboard/jobs/${encodeURIComponent(jobId)}/requests/${encodeURIComponent(chosen)}/curl`);
      curlLine.textContent = found.command;
      curlLine.hidden = false;
      curlHint.hidden = !found.keyed;
      try {
        await TrainML.copy(found.command);
        TrainML.toast("Command copied to the clipboard.");
      } catch (err) {
        TrainML.toast("Could not copy; select the command below and copy it yourself.");
      }
    } catch (err) {
      error.textContent = err.message;
    }
  });

  const replayButton = document.getElementById("replay");
  replayButton.addEventListener("click", async () => {
    error.textContent = "";
    replayButton.disabled = true;
    replayButton.textContent = "Replaying…";
    try {
      const answer = await TrainML.api("POST", `${base}/${encodeURIComponent(chosen)}/replay`);
      document.getElementById("replay-old-heading").textContent = `Old answer (${answer.old.status})`;
      document.getElementById("replay-new-heading").textContent = `New answer (${answer.new.status})`;
      document.getElementById("replay-old").textContent = pretty(answer.old.response);
      document.getElementById("replay-new").textContent = pretty(answer.new.response);
      const verdict = document.getElementById("replay-verdict");
      verdict.textContent = answer.differ ? "The answers differ." : "The answers are the same.";
      verdict.dataset.differ = String(answer.differ);
      replayed.hidden = false;
      refresh(); // the replayed call may have been captured too
    } catch (err) {
      error.textContent = err.message;
    } finally {
      replayButton.disabled = false;
      replayButton.textContent = "Replay";
    }
  });

  for (const select of Object.values(filters)) select.addEventListener("change", refresh);
  document.getElementById("request-filters").addEventListener("submit", (event) => event.preventDefault());

  followJobHead((job) => {
    rate = Number((job.endpoint && job.endpoint.capture) || 0);
    off.hidden = rate > 0;
  });
  refresh();
})();

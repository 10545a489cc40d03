// Logs: newest line on top. New lines arrive through the REST API's log stream (server-sent events) and go on
// top without a reload; scrolling towards the bottom loads older pages through the same API's cursor.
"use strict";

(() => {
  const jobId = document.getElementById("job-head").dataset.jobId;
  const base = `/api/jobs/${encodeURIComponent(jobId)}/logs`;
  const box = document.getElementById("log");
  const lines = document.getElementById("log-lines");
  const end = document.getElementById("log-end");
  const live = document.getElementById("live");
  const PAGE = 200;
  const MAX_LINES = 3000; // lines kept on the page; older ones are dropped and loaded again on scroll

  let older = null; // cursor for the next older page; null when the oldest line is on the page
  let loading = false;

  function lineNode(entry, fresh) {
    const row = document.createElement("div");
    row.className = "log-line" + (fresh ? " fresh" : "");
    row.dataset.id = entry.id;
    row.dataset.stream = entry.stream;
    const time = document.createElement("time");
    time.setAttribute("datetime", entry.time);
    time.textContent = new Date(entry.time).toLocaleTimeString(undefined, { hour12: false });
    time.title = entry.time;
    const message = document.createElement("span");
    message.className = "msg";
    message.textContent = entry.message;
    row.append(time, message);
    return row;
  }

  function showEnd() {
    end.textContent = older === null ? (lines.children.length ? "Beginning of the log" : "No log lines yet") : "Scroll for older lines";
  }

  // Newer lines go on top; if the reader has scrolled down, keep what they are reading where it is.
  function prepend(entries) {
    const before = box.scrollHeight;
    const fragment = document.createDocumentFragment();
    for (let i = entries.length - 1; i >= 0; i--) fragment.appendChild(lineNode(entries[i], true));
    lines.insertBefore(fragment, lines.firstChild);
    if (box.scrollTop > 0) box.scrollTop += box.scrollHeight - before;
    while (lines.children.length > MAX_LINES) {
      lines.lastChild.remove();
      older = Number(lines.lastChild.dataset.id);
    }
    showEnd();
  }

  async function loadOlder() {
    if (loading || (older === null && lines.children.length)) return;
    loading = true;
    end.textContent = "Loading…";
    try {
      const query = new URLSearchParams({ limit: PAGE });
      if (older !== null) query.set("before", older);
      const page = await TrainML.api("GET", `${base}?${query}`);
      for (const entry of page.logs) lines.appendChild(lineNode(entry, false));
      older = page.next;
    } catch (err) {
      TrainML.toast(err.message);
    } finally {
      loading = false;
      showEnd();
    }
  }

  function nearBottom() {
    return box.scrollTop + box.clientHeight > box.scrollHeight - 200;
  }

  // The indicator says what a reader can expect: lines as they come, or none until the endpoint starts again.
  let connected = false;
  let status = null;
  function showLive() {
    const stopped = TrainML.FINAL.has(status);
    live.dataset.state = connected && !stopped ? "live" : "waiting";
    live.textContent = stopped ? `Endpoint ${status}; new lines appear when it starts again` : connected ? "Live" : "Reconnecting…";
  }

  function follow(after) {
    const source = new EventSource(`${base}/stream?after=${after}`);
    source.onmessage = (event) => prepend([JSON.parse(event.data)]);
    source.onopen = () => { connected = true; showLive(); };
    // The stream ends when the job stops; EventSource reconnects by itself, from the last line it saw.
    source.onerror = () => { connected = false; showLive(); };
  }

  async function start() {
    await loadOlder();
    const newest = lines.firstChild ? Number(lines.firstChild.dataset.id) : 0;
    follow(newest);
    box.addEventListener("scroll", () => { if (nearBottom()) loadOlder(); });
    // A short first page may not fill the box; keep loading until it scrolls or the log's beginning shows.
    while (older !== null && box.scrollHeight <= box.clientHeight) await loadOlder();
  }

  followJobHead((job) => { status = job.status; showLive(); });
  start();
})();

// Logs: newest entry on top. An entry is one record: a line, or a multi-line one (a traceback, an indented
// printed block) kept together and in its own order, top-down. New lines arrive through the REST API's log
// stream (server-sent events) and go on top without a reload; scrolling down loads older pages through the
// same API's cursor. Each entry shows one timestamp (the date too when it is not today): an access-log line's
// own timestamp is dropped, since the stored one says the same. Platform events, stderr and 4xx/5xx answers
// are each styled apart. Once the job has more than one revision (an update), each output line says which
// revision's process printed it ("r2"). The bar above filters the entries shown (text, case-insensitive), pauses
// the live lines (held, and counted, until Follow) and downloads the whole log as text.
"use strict";

(() => {
  const jobId = document.getElementById("job-head").dataset.jobId;
  const base = `/api/jobs/${encodeURIComponent(jobId)}/logs`;
  const box = document.getElementById("log");
  const list = document.getElementById("log-lines");
  const end = document.getElementById("log-end");
  const live = document.getElementById("live");
  const PAGE = 200;
  const MAX_ENTRIES = 3000; // entries kept on the page; older ones are dropped and loaded again on scroll
  const JOIN_WITHIN = 2000; // ms: lines further apart than this are never one record
  // The runtime's access log: "2026-11-27T04:01:35Z POST /predict 200 0.43ms 5f1c0a9e3b2d-1f" (the request id
  // last, a caller's own may hold spaces).
  const ACCESS = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) ([A-Z]+ \S+ (\d{3}) \d+\.\d+ms(?: .+)?)$/;
  const TRACEBACK = "Traceback (most recent call last):";
  const CHAINED = /^(During handling of the above exception|The above exception was the direct cause)/;

  let older = null; // cursor for the next older page; null when the oldest line is on the page
  let several = Number(box.dataset.revisions || "1") > 1; // revisions to tell apart

  // A line of a revision after the first (an update while the page is open): tag every line from now on.
  function notice(lines) {
    if (several || !lines.some((line) => (line.revision || 1) > 1)) return;
    several = true;
    for (const row of list.children) render(row.entry, false);
  }
  let loading = false;

  // -- records --------------------------------------------------------------------------------------------------

  // Does `line` continue the record `entry` (oldest line first)? Only output of the same stream, close in time:
  // an indented line, the last line of a traceback (the exception, right after its indented frames), or a
  // chained traceback's joining lines.
  function continues(entry, line) {
    if (!entry || line.stream === "event" || entry.stream !== line.stream || entry.revision !== line.revision) return false;
    if (ACCESS.test(line.message) || Date.parse(line.time) - entry.lastTime > JOIN_WITHIN) return false;
    const text = line.message, last = entry.lines[entry.lines.length - 1];
    if (/^[ \t]+\S/.test(text)) return true;
    const traceback = entry.lines[0].startsWith(TRACEBACK);
    if (!traceback) return false;
    if (/^[ \t]/.test(last) || text === "" || CHAINED.test(text)) return true;
    return (last === "" || CHAINED.test(last)) && (text.startsWith(TRACEBACK) || CHAINED.test(text) || text === "");
  }

  function newEntry(line) {
    return { firstId: line.id, lastId: line.id, stream: line.stream, time: line.time, revision: line.revision,
             lastTime: Date.parse(line.time), lines: [line.message], node: null };
  }

  function extend(entry, line) {
    entry.lines.push(line.message);
    entry.lastId = line.id;
    entry.lastTime = Date.parse(line.time);
  }

  // Lines oldest first -> records oldest first.
  function fold(lines) {
    const entries = [];
    for (const line of lines) {
      const lastEntry = entries[entries.length - 1];
      if (continues(lastEntry, line)) extend(lastEntry, line);
      else entries.push(newEntry(line));
    }
    return entries;
  }

  // -- showing --------------------------------------------------------------------------------------------------

  const today = () => new Date().toDateString();

  function stamp(iso) {
    const date = new Date(iso);
    const clock = date.toLocaleTimeString(undefined, { hour12: false });
    if (date.toDateString() === today()) return clock;
    return `${date.toLocaleDateString(undefined, { month: "short", day: "numeric", year: date.getFullYear() === new Date().getFullYear() ? undefined : "numeric" })} ${clock}`;
  }

  function render(entry, fresh) {
    const row = entry.node || document.createElement("div");
    entry.node = row;
    row.className = "log-line" + (fresh ? " fresh" : "") + (entry.lines.length > 1 ? " multi" : "");
    row.dataset.id = entry.lastId;
    row.dataset.firstId = entry.firstId;
    row.dataset.stream = entry.stream;
    row.entry = entry;
    const time = document.createElement("time");
    time.setAttribute("datetime", entry.time);
    time.textContent = stamp(entry.time);
    time.title = entry.time;
    const message = document.createElement("span");
    message.className = "msg";
    let text = entry.lines.join("\n");
    const access = entry.lines.length === 1 && ACCESS.exec(text);
    if (access) {
      text = access[2]; // its own timestamp is the entry's: one per line
      const code = Number(access[3]);
      row.dataset.http = code >= 500 ? "5xx" : code >= 400 ? "4xx" : "ok";
    }
    message.textContent = text;
    const kind = document.createElement("span");
    kind.className = "kind";
    const tag = several && entry.revision ? `r${entry.revision}` : "";
    kind.textContent = [tag, { stderr: "err", event: "platform" }[entry.stream] || ""].filter(Boolean).join(" ");
    if (tag) row.dataset.revision = entry.revision;
    row.replaceChildren(time, kind, message);
    row.hidden = !matches(entry);
    return row;
  }

  function showEnd() {
    if (filter.value.trim()) showNote();
    end.textContent = older === null ? (list.children.length ? "Beginning of the log" : "No log lines yet") : "Scroll for older lines";
  }

  // -- filter, pause and follow ----------------------------------------------------------------------------------

  const filter = document.getElementById("log-filter");
  const pause = document.getElementById("log-pause");
  const note = document.getElementById("log-note");
  const NOTE = note.textContent;
  let held = null; // lines that came while paused, oldest first; null while following

  function matches(entry) {
    const query = filter.value.trim().toLowerCase();
    return !query || entry.lines.join("\n").toLowerCase().includes(query);
  }

  function showNote() {
    const query = filter.value.trim();
    const parts = [];
    if (query) {
      const shown = [...list.children].filter((row) => !row.hidden).length;
      parts.push(`${shown} of ${list.children.length} entries on the page match “${query}”`);
    }
    if (held) parts.push(`Paused: ${held.length} new ${held.length === 1 ? "line" : "lines"} held`);
    note.textContent = parts.length ? parts.join(" · ") : NOTE;
  }

  filter.addEventListener("input", () => {
    for (const row of list.children) row.hidden = !matches(row.entry);
    showNote();
  });

  pause.addEventListener("click", () => {
    if (held === null) {
      held = [];
      pause.textContent = "Follow";
      pause.setAttribute("aria-pressed", "true");
    } else {
      const lines = held;
      held = null;
      pause.textContent = "Pause";
      pause.setAttribute("aria-pressed", "false");
      prepend(lines);
      box.scrollTop = 0; // following: the newest line in view
    }
    showLive();
    showNote();
  });

  // Newer lines (oldest first) go on top; if the reader has scrolled down, keep what they read where it is.
  function prepend(lines) {
    if (held) {
      held.push(...lines);
      showNote();
      return;
    }
    notice(lines);
    const before = box.scrollHeight;
    for (const line of lines) {
      const top = list.firstChild && list.firstChild.entry;
      if (continues(top, line)) {
        extend(top, line);
        render(top, true);
      } else {
        list.insertBefore(render(newEntry(line), true), list.firstChild);
      }
    }
    if (box.scrollTop > 0) box.scrollTop += box.scrollHeight - before;
    while (list.children.length > MAX_ENTRIES) {
      list.lastChild.remove();
      older = Number(list.lastChild.dataset.firstId);
    }
    showEnd();
  }

  // An older page (newest first from the API) goes at the bottom; the record the page cut in two is joined.
  function append(page) {
    notice(page);
    const entries = fold([...page].reverse());
    const bottom = list.lastChild && list.lastChild.entry;
    const newest = entries[entries.length - 1];
    if (bottom && newest && continues(newest, { stream: bottom.stream, time: bottom.time, message: bottom.lines[0], revision: bottom.revision })) {
      for (const text of bottom.lines) newest.lines.push(text);
      newest.lastId = bottom.lastId;
      newest.lastTime = bottom.lastTime;
      list.lastChild.remove();
    }
    for (let i = entries.length - 1; i >= 0; i--) list.appendChild(render(entries[i], false));
  }

  async function loadOlder() {
    if (loading || (older === null && list.children.length)) return;
    loading = true;
    end.textContent = "Loading…";
    try {
      const query = new URLSearchParams({ limit: PAGE });
      if (older !== null) query.set("before", older);
      const page = await TrainML.api("GET", `${base}?${query}`);
      append(page.logs);
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
    live.dataset.state = held ? "paused" : connected && !stopped ? "live" : "waiting";
    live.textContent = held ? "Paused" : stopped ? `Endpoint ${status}; new lines appear when it starts again`
      : connected ? "Live" : "Reconnecting…";
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
    const newest = list.firstChild ? Number(list.firstChild.dataset.id) : 0;
    follow(newest);
    box.addEventListener("scroll", () => { if (nearBottom()) loadOlder(); });
    // A short first page may not fill the box; keep loading until it scrolls or the log's beginning shows.
    while (older !== null && box.scrollHeight <= box.clientHeight) await loadOlder();
  }

  followJobHead((job) => { status = job.status; showLive(); });
  start();
})();

// Revisions on the details page: which one serves, why one failed, "Roll back" on a retired one whose code is
// kept, and "Deploy new version" (a folder or archive uploaded as the create form uploads it, or a stored model,
// with the serving revision's routes prefilled). Both go through the REST API (POST /api/jobs/ID/revisions and
// /rollback), which answers once the new revision serves or has failed; the serving one is untouched on failure.
"use strict";

(() => {
  const jobId = document.getElementById("job-head").dataset.jobId;
  const base = `/api/jobs/${encodeURIComponent(jobId)}`;
  const panel = document.getElementById("revisions");
  const rows = document.getElementById("revision-rows");
  const form = document.getElementById("deploy");
  const open = document.getElementById("deploy-open");
  const submit = document.getElementById("deploy-submit");
  const error = document.getElementById("revision-error");
  const status = document.getElementById("revision-status");
  const routes = document.getElementById("deploy-routes");
  const POLL = 5000; // ms: revisions made elsewhere (the CLI) show up within this
  let revisions = JSON.parse(panel.dataset.revisions || "[]");
  let busy = false;

  // The job's status as the head shows it (common.js keeps it live).
  const running = () => document.querySelector('#job-head [data-field="status"]').dataset.status === TrainML.STATUS.running;

  function cell(label, child, className) {
    const td = document.createElement("td");
    if (label) td.dataset.label = label;
    if (className) td.className = className;
    if (child !== null && child !== undefined) td.append(child);
    return td;
  }

  function render() {
    const live = running();
    rows.replaceChildren(...revisions.slice().reverse().map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.revision = r.revision;
      tr.dataset.status = r.status;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.dataset.status = r.status;
      badge.textContent = r.status;
      const time = document.createElement("time");
      time.setAttribute("datetime", r.created);
      time.textContent = TrainML.localTime(r.created, true);
      const actions = cell(null, null, "actions");
      if (r.status === "retired" && r.code_kept && live) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "small";
        button.dataset.rollback = r.revision;
        button.textContent = "Roll back";
        button.setAttribute("aria-label", `Roll back to revision ${r.revision}`);
        button.disabled = busy;
        actions.append(button);
      }
      tr.append(cell("Revision", String(r.revision)), cell("Status", badge), cell("Created", time),
                cell("Source", r.source, "mono"), cell("Why it failed", r.reason || ""), actions);
      return tr;
    }));
    open.hidden = !live;
  }

  async function refresh() {
    try {
      revisions = await TrainML.api("GET", `${base}/revisions`);
    } catch (err) {
      return; // the job went away or the control plane is restarting: the head says so
    }
    render();
  }

  // One switch at a time: while one runs, the buttons wait (the server would refuse a second with 409).
  async function switchTo(label, request) {
    busy = true;
    submit.disabled = true;
    render();
    status.textContent = label;
    error.textContent = "";
    try {
      const revision = await request();
      if (revision.status === "serving") {
        status.textContent = `Revision ${revision.revision} is serving.`;
        TrainML.toast(`Revision ${revision.revision} is serving.`);
        return true;
      }
      status.textContent = "";
      error.textContent = `Revision ${revision.revision} ${revision.status}: ${revision.reason || "no reason given"}`;
    } catch (err) {
      status.textContent = "";
      error.textContent = err.message;
    } finally {
      busy = false;
      submit.disabled = false;
      await refresh();
    }
    return false;
  }

  rows.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-rollback]");
    if (!button || busy) return;
    const number = Number(button.dataset.rollback);
    const text = `Serve revision ${number} again? It starts beside the serving one on the same URL with its kept code ` +
      "and environment, and takes over once loaded.";
    if (!(await TrainML.confirm(text, "Roll back", `Roll back to revision ${number}?`))) return;
    await switchTo(`Rolling back to revision ${number}…`, () => TrainML.api("POST", `${base}/rollback`, { to: number }));
  });

  // -- deploy new version ---------------------------------------------------------------------------------------

  const upload = ModelUpload.attach(document.getElementById("deploy-upload"), () => { error.textContent = ""; });
  const source = () => form.querySelector('input[name="deploy-source"]:checked').value;

  for (const radio of form.querySelectorAll('input[name="deploy-source"]')) {
    radio.addEventListener("change", () => {
      for (const box of form.querySelectorAll("[data-deploy-source]")) box.hidden = box.dataset.deploySource !== source();
    });
  }

  function show(visible) {
    form.hidden = !visible;
    open.setAttribute("aria-expanded", String(visible));
    if (visible) form.querySelector('input[name="deploy-source"]:checked').focus();
  }

  open.addEventListener("click", () => show(form.hidden));
  document.getElementById("deploy-cancel").addEventListener("click", () => show(false));

  function payload() {
    let parsed;
    try {
      parsed = JSON.parse(routes.value);
    } catch (err) {
      throw new Error(`Routes: not valid JSON (${err.message})`);
    }
    if (!Array.isArray(parsed) || !parsed.length) throw new Error("Routes: a list of one or more route objects");
    let model;
    if (source() === "upload") {
      const uploaded = upload.current();
      if (!uploaded) throw new Error("Pick a folder or drop an archive, and wait until it is uploaded.");
      model = { source_type: "local", source_uri: `${uploaded.name} (uploaded from the browser)`, upload_id: uploaded.id };
    } else {
      const chosen = document.getElementById("deploy-model").value;
      if (!chosen) throw new Error("Choose a stored model.");
      model = { source_type: "trainml", source_uri: chosen };
    }
    return { model, endpoint: { routes: parsed } };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    let body;
    try {
      body = payload();
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    const next = revisions.length ? revisions[revisions.length - 1].revision + 1 : 2;
    const done = await switchTo(`Deploying revision ${next}: fetching, building and loading it beside the serving one…`,
                                () => TrainML.api("POST", `${base}/revisions`, body));
    if (done) show(false);
  });

  render();
  setInterval(() => { if (!busy && !document.hidden) refresh(); }, POLL);
})();

// Stored models: add one from a folder on this computer (uploaded as the Create form uploads it) or a git URI,
// and remove one (confirmed). Everything goes through the REST API; the page is reloaded from the server after.
"use strict";

(() => {
  const form = document.getElementById("model-form");

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-remove-model]");
    if (!button) return;
    const name = button.dataset.name;
    const users = Number(button.dataset.users || 0);
    const text = `Remove the stored model “${name}”? ` +
      (users === 1 ? "The endpoint made from it keeps running its own copy."
        : users ? `The ${users} endpoints made from it keep running their own copies.` : "Its files are deleted.");
    if (!(await TrainML.confirm(text, "Remove", "Remove model?"))) return;
    button.disabled = true;
    try {
      await TrainML.api("DELETE", `/api/models/${encodeURIComponent(button.dataset.removeModel)}`);
      TrainML.toast(`Removed ${name}.`);
      if (button.dataset.then) window.location.assign(button.dataset.then);
      else {
        button.closest("tr").remove();
        const rows = document.getElementById("model-rows");
        document.getElementById("no-models").classList.toggle("hidden", rows.children.length > 0);
      }
    } catch (err) {
      TrainML.toast(err.message);
      button.disabled = false;
    }
  });

  TrainML.localizeTimes(document);
  if (!form) return;

  let uploaded = null;
  ModelUpload.attach(document.getElementById("stored-upload"), (upload) => {
    uploaded = upload;
    const name = document.getElementById("model-name");
    if (upload && !name.value.trim()) name.value = upload.name.replace(/\.(tar\.gz|tgz|zip)$/i, "");
  });
  const source = () => form.querySelector('input[name="model-source"]:checked').value;

  form.addEventListener("change", (event) => {
    if (event.target.name !== "model-source") return;
    for (const block of form.querySelectorAll("[data-model-source]")) block.hidden = block.dataset.modelSource !== source();
  });

  function show(field, message) {
    const slot = form.querySelector(`[data-error-for="${field}"]`) || form.querySelector('[data-error-for="form"]');
    slot.textContent = message;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
    const name = document.getElementById("model-name").value.trim();
    const body = { name, source_type: source() === "git" ? "git" : "local" };
    let problems = 0;
    if (!name) { show("name", "a name is required"); problems++; }
    if (body.source_type === "git") {
      body.source_uri = document.getElementById("model-git-uri").value.trim();
      body.git_ref = document.getElementById("model-git-ref").value.trim() || null;
      if (!body.source_uri) { show("source_uri", "a git URI is required"); problems++; }
    } else if (!uploaded) {
      show("form", "pick a folder or drop an archive, and wait until it is uploaded");
      problems++;
    } else {
      body.upload_id = uploaded.id;
      body.source_uri = `${uploaded.name} (uploaded from the browser)`;
    }
    if (problems) return;
    const button = document.getElementById("add-model");
    button.disabled = true;
    button.textContent = body.source_type === "git" ? "Cloning…" : "Adding…";
    try {
      const model = await TrainML.api("POST", "/api/models", body);
      window.location.assign(`${TrainML.ROOT}/models/${encodeURIComponent(model.id)}`);
    } catch (err) {
      show("form", err.message);
      button.disabled = false;
      button.textContent = "Add model";
    }
  });
})();

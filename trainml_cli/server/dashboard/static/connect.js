// Connect: the head, the URL and the commands follow the job live; the URL and each command have a Copy button.
// The calls show as curl, Python (requests) or `trainml job call`; Try it sends one call through the control plane
// (the endpoint is another origin) with the route's body template, and shows the answer.
"use strict";

(() => {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    const what = source.classList.contains("url") ? "URL" : source.hasAttribute("data-python") ? "Code" : "Command";
    try {
      await TrainML.copy(source.textContent);
      button.textContent = "Copied";
      TrainML.toast(`${what} copied to the clipboard.`);
    } catch (err) {
      TrainML.toast(`Could not copy; select the ${what.toLowerCase()} and copy it yourself.`);
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });

  // Rotate key: once the endpoint has taken the new key, it replaces the old one in the key box and in every command.
  const rotate = document.getElementById("rotate-key");
  if (rotate) {
    rotate.addEventListener("click", async () => {
      const name = document.querySelector("#job-head h1").textContent;
      const ok = await TrainML.confirm(`Calls to ${name} with the current key are refused once the new one is in place.`,
        "Rotate key", "Rotate the endpoint key?");
      if (!ok) return;
      rotate.disabled = true;
      rotate.textContent = "Rotating…";
      try {
        const jobId = document.getElementById("job-head").dataset.jobId;
        const answer = await TrainML.api("POST", `/api/jobs/${encodeURIComponent(jobId)}/rotate-key`);
        const box = document.getElementById("endpoint-key");
        const old = box.textContent;
        box.textContent = answer.key;
        for (const node of document.querySelectorAll("[data-template], [data-key]")) {
          if (node.dataset.template) node.dataset.template = node.dataset.template.split(old).join(answer.key);
          node.textContent = node.textContent.split(old).join(answer.key);
        }
        document.dispatchEvent(new CustomEvent("trainml:key", { detail: answer.key }));
        TrainML.toast("Key rotated: the old key no longer works.");
      } catch (err) {
        TrainML.toast(err.message);
      } finally {
        rotate.disabled = false;
        rotate.textContent = "Rotate key";
      }
    });
  }

  // curl, Python or the CLI: one choice for every route.
  const picker = document.querySelector('#examples [role="group"]');
  picker.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-show]");
    if (!button) return;
    for (const other of picker.querySelectorAll("button")) other.setAttribute("aria-pressed", String(other === button));
    for (const block of document.querySelectorAll("#examples .command")) block.hidden = block.dataset.kind !== button.dataset.show;
  });

  // -- Try it -------------------------------------------------------------------------------------------------

  const tryForm = document.getElementById("try-form");
  if (tryForm) {
    const routeSelect = document.getElementById("try-route");
    const bodyInput = document.getElementById("try-body");
    const tryError = document.getElementById("try-error");
    const answerBox = document.getElementById("try-answer");
    routeSelect.addEventListener("change", () => {
      bodyInput.value = routeSelect.selectedOptions[0].dataset.template;
      tryError.textContent = "";
    });
    tryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      tryError.textContent = "";
      bodyInput.removeAttribute("aria-invalid");
      if (routeSelect.selectedOptions[0].hasAttribute("data-takes-file")) {
        tryError.textContent = "This route takes a file: call it with the curl or Python code above.";
        return;
      }
      let body;
      try {
        body = JSON.parse(bodyInput.value || "{}");
      } catch (err) {
        tryError.textContent = `The body is not valid JSON (${err.message}).`;
        bodyInput.setAttribute("aria-invalid", "true");
        bodyInput.focus();
        return;
      }
      const send = document.getElementById("try-send");
      send.disabled = true;
      send.textContent = "Sending…";
      try {
        const jobId = document.getElementById("job-head").dataset.jobId;
        const answer = await TrainML.api("POST", `/api/dashboard/jobs/${encodeURIComponent(jobId)}/try`,
          { route: Number(routeSelect.value), body });
        const code = document.getElementById("try-code");
        code.textContent = String(answer.status);
        code.dataset.ok = String(answer.status < 400);
        document.getElementById("try-meta").textContent = [`${answer.ms} ms`, answer.content_type,
          answer.with_key ? "sent with the endpoint key" : "", answer.cut ? "answer cut at 256 KiB" : ""].filter(Boolean).join(" · ");
        document.getElementById("try-output").textContent = answer.answer;
        answerBox.hidden = false;
      } catch (err) {
        tryError.textContent = err.message;
      } finally {
        send.textContent = "Send";
        send.disabled = false;
      }
    });
  }

  // The commands are written for a stand-in URL: the live one replaces it while the endpoint has one.
  const standIn = document.getElementById("examples").dataset.standIn;
  const notRunning = document.getElementById("not-running");
  const sentence = (status) => ({ [TrainML.STATUS.failed]: "The endpoint failed", [TrainML.STATUS.new]: "The endpoint was just created" }[status] || `The endpoint is ${status}`);
  followJobHead((job) => {
    notRunning.hidden = job.status === TrainML.STATUS.running;
    document.getElementById("status-sentence").textContent = sentence(job.status);
    for (const pre of document.querySelectorAll("pre[data-template]")) {
      pre.textContent = job.url ? pre.dataset.template.split(standIn).join(job.url) : pre.dataset.template;
    }
    for (const pre of document.querySelectorAll("#examples pre[data-template]")) {
      document.querySelector(`button[data-copy="${pre.id}"]`).disabled = !job.url;
    }
    const send = document.getElementById("try-send");
    if (send) send.disabled = job.status !== TrainML.STATUS.running;
    document.querySelector('button[data-copy="endpoint-url"]').hidden = !job.url;
    const docs = document.getElementById("docs-link");
    docs.hidden = !job.url;
    if (job.url) docs.querySelector("a").href = `${job.url}/docs`;
  });
})();

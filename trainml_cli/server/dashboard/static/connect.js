// Connect: the head follows the job live; each curl command has a copy button.
"use strict";

(() => {
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

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    try {
      await copy(source.textContent);
      button.textContent = "Copied";
      TrainML.toast("Command copied to the clipboard.");
    } catch (err) {
      TrainML.toast("Could not copy; select the command and copy it yourself.");
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });

  const notRunning = document.getElementById("not-running");
  followJobHead((job) => {
    notRunning.hidden = job.status === "running";
    // The URL is known only while the endpoint is up; commands keep the port it had or will have again.
  });
})();

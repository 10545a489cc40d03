// Secrets and Environments: add a secret from a password field (its value is sent once and never comes back),
// remove one; remove an environment or prune the unused ones. Everything goes through the REST API, and every
// name reaches the page through textContent.
"use strict";

(() => {
  TrainML.localizeTimes(document);

  function cell(label, text, className) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  // -- secrets ------------------------------------------------------------------------------------------------

  const secretForm = document.getElementById("secret-form");
  if (secretForm) {
    const rows = document.getElementById("secret-rows");
    const nameInput = document.getElementById("secret-name");
    const valueInput = document.getElementById("secret-value");
    const errors = {
      name: secretForm.querySelector('[data-error-for="name"]'),
      value: secretForm.querySelector('[data-error-for="value"]'),
      form: secretForm.querySelector('[data-error-for="form"]'),
    };

    function row(secret) {
      const tr = document.createElement("tr");
      tr.dataset.secret = secret.name;
      const time = document.createElement("time");
      time.setAttribute("datetime", secret.updated);
      time.textContent = TrainML.localTime(secret.updated);
      const updated = cell("Updated", "");
      updated.append(time);
      const actions = document.createElement("td");
      actions.className = "actions";
      const group = document.createElement("div");
      group.className = "action-group";
      const remove = document.createElement("button");
      Object.assign(remove, { type: "button", className: "small danger", textContent: "Remove" });
      remove.dataset.removeSecret = secret.name;
      remove.dataset.users = "0";
      remove.setAttribute("aria-label", `Remove ${secret.name}`);
      group.append(remove);
      actions.append(group);
      tr.append(cell("Name", secret.name, "name mono"), updated, cell("Used by", "—"), actions);
      return tr;
    }

    secretForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const node of Object.values(errors)) node.textContent = "";
      const name = nameInput.value.trim();
      if (!name) errors.name.textContent = "a name is required";
      if (!valueInput.value) errors.value.textContent = "a value is required";
      if (!name || !valueInput.value) return;
      const button = document.getElementById("add-secret");
      button.disabled = true;
      try {
        const secret = await TrainML.api("PUT", `/api/secrets/${encodeURIComponent(name)}`, { value: valueInput.value });
        valueInput.value = ""; // the value leaves the page as soon as the control plane has it
        nameInput.value = "";
        const old = [...rows.children].find((tr) => tr.dataset.secret === secret.name);
        if (old) {
          const time = old.querySelector("time");
          time.setAttribute("datetime", secret.updated);
          time.textContent = TrainML.localTime(secret.updated);
        } else {
          rows.append(row(secret));
        }
        document.getElementById("no-secrets").classList.add("hidden");
        TrainML.toast(`Secret ${secret.name} saved; its value is not shown again.`);
      } catch (err) {
        (err.status === 422 ? errors.name : errors.form).textContent = err.message;
      } finally {
        button.disabled = false;
      }
    });

    rows.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-remove-secret]");
      if (!button) return;
      const name = button.dataset.removeSecret;
      const users = Number(button.dataset.users || "0");
      const text = users ? `${name} is named by ${users === 1 ? "an endpoint" : `${users} endpoints`}: they get no ${name} the next time they start.`
        : `${name} is removed from the control plane.`;
      if (!(await TrainML.confirm(text, "Remove", "Remove secret?"))) return;
      try {
        await TrainML.api("DELETE", `/api/secrets/${encodeURIComponent(name)}`);
        button.closest("tr").remove();
        document.getElementById("no-secrets").classList.toggle("hidden", rows.children.length > 0);
        TrainML.toast(`Secret ${name} removed.`);
      } catch (err) {
        TrainML.toast(err.message);
      }
    });
  }

  // -- environments -------------------------------------------------------------------------------------------

  const environmentRows = document.getElementById("environment-rows");
  if (environmentRows) {
    const empty = () => document.getElementById("no-environments").classList.toggle("hidden", environmentRows.children.length > 0);

    environmentRows.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-remove-environment]");
      if (!button) return;
      const key = button.dataset.removeEnvironment;
      const held = button.dataset.heldBy;
      if (held) {
        TrainML.toast(`Held by ${held}: stop or remove it first.`);
        return;
      }
      if (!(await TrainML.confirm(`Environment ${key.slice(0, 12)} is removed; an endpoint that needs it again builds it again.`,
        "Remove", "Remove environment?"))) return;
      try {
        await TrainML.api("DELETE", `/api/environments/${encodeURIComponent(key)}`);
        button.closest("tr").remove();
        empty();
        TrainML.toast(`Environment ${key.slice(0, 12)} removed.`);
      } catch (err) {
        TrainML.toast(err.message);
      }
    });

    document.getElementById("prune-environments").addEventListener("click", async () => {
      if (!(await TrainML.confirm("Every environment no running endpoint holds is removed.", "Prune", "Prune environments?"))) return;
      try {
        const answer = await TrainML.api("POST", "/api/environments/prune");
        for (const key of answer.removed) {
          const tr = [...environmentRows.children].find((row) => row.dataset.environment === key);
          if (tr) tr.remove();
        }
        empty();
        const n = answer.removed.length;
        TrainML.toast(n ? `${n} ${n === 1 ? "environment" : "environments"} removed.` : "Nothing to prune: every environment is in use.");
      } catch (err) {
        TrainML.toast(err.message);
      }
    });
  }
})();

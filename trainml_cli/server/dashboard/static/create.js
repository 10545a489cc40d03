// Create: build routes and parameters, ask the server to check the form (the same rules as the CLI), show each
// problem next to its field, then a review; Create starts the endpoint and goes to its page.
"use strict";

(() => {
  const form = document.getElementById("create-form");
  const routesBox = document.getElementById("routes");
  const routeTemplate = document.getElementById("route-template");
  const paramTemplate = document.getElementById("param-template");
  const review = document.getElementById("review");
  const createButton = document.getElementById("create");
  const createError = document.getElementById("create-error");
  const requirementsNote = document.getElementById("requirements-found");
  let uid = 0;

  // Give every input in a cloned block its own id, and its label the matching `for`: labels on every control.
  function label(block, prefix) {
    for (const input of block.querySelectorAll("[data-input]")) {
      const id = `${prefix}-${input.dataset.input}`;
      input.id = id;
      const text = block.querySelector(`label[data-for="${input.dataset.input}"]`);
      if (text) text.htmlFor = id;
    }
  }

  function addRoute() {
    const route = routeTemplate.content.firstElementChild.cloneNode(true);
    label(route, `route-${++uid}`);
    routesBox.appendChild(route);
    renumber();
    route.querySelector('[data-input="path"]').focus();
    return route;
  }

  function addParam(route) {
    const param = paramTemplate.content.firstElementChild.cloneNode(true);
    label(param, `param-${++uid}`);
    route.querySelector("[data-params]").appendChild(param);
    renumber();
    param.querySelector('[data-input="name"]').focus();
    return param;
  }

  function renumber() {
    [...routesBox.children].forEach((route, i) => {
      route.querySelector("[data-route-title]").textContent = `Route ${i + 1}`;
      route.querySelector("[data-remove-route]").setAttribute("aria-label", `Remove route ${i + 1}`);
      route.querySelectorAll("[data-param]").forEach((param, j) => {
        param.querySelector("[data-remove-param]").setAttribute("aria-label", `Remove parameter ${j + 1} of route ${i + 1}`);
      });
    });
  }

  // -- reading the form -----------------------------------------------------------------------------------------

  function value(selector) {
    return document.querySelector(selector).value;
  }

  // Numbers go as numbers; text a number input cannot hold goes as text, so the server names the problem.
  function number(selector) {
    const text = value(selector).trim();
    if (text === "") return null;
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }

  function numberIn(input) {
    const text = input.value.trim();
    if (text === "") return null;
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }

  function checkedValues(name) {
    return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((input) => input.value);
  }

  function collect() {
    const source = form.querySelector('input[name="source"]:checked').value;
    return {
      name: value("#name"),
      auth: document.getElementById("auth").checked,
      replicas: number("#replicas"),
      resources: {
        gpu_types: [value("#gpu-type")],
        gpu_count: number("#gpu-count"),
        cpu_count: number("#cpu-count"),
        disk_size: number("#disk-size"),
        max_price: number("#max-price"),
      },
      model: {
        source,
        directory: value("#model-directory"),
        source_uri: value("#git-uri"),
        git_ref: value("#git-ref"),
        model: value("#stored-model"),
        upload_id: uploaded ? uploaded.id : "",
        upload_name: uploaded ? uploaded.name : "",
      },
      // Packages as typed (the CLI's comma format, split by the server); python is "" for the default.
      environment: {
        packages: { pip: value("#pip-packages") },
        python: value("#python"),
        requirements: value("#requirements").trim(),
        secrets: checkedValues("secret"),
        credentials: checkedValues("credential"),
      },
      routes: [...routesBox.children].map((route) => {
        const get = (name) => route.querySelector(`[data-input="${name}"]`);
        return {
          verb: get("verb").value,
          path: get("path").value.trim(),
          file: get("file").value.trim(),
          function: get("function").value.trim(),
          positional: get("positional").checked,
          ...(get("batch").checked ? {
            batch: { max_size: numberIn(get("batch_max_size")), max_wait_ms: numberIn(get("batch_max_wait_ms")) ?? 0 },
          } : {}),
          body: [...route.querySelectorAll("[data-param]")].map((param) => {
            const item = (name) => param.querySelector(`[data-input="${name}"]`);
            const entry = { name: item("name").value.trim(), type: item("type").value };
            if (item("optional").checked) {
              entry.optional = true;
              if (item("default_value").value.trim() !== "") entry.default_value = item("default_value").value;
            }
            if (entry.type === "list" && item("items").value) entry.items = item("items").value;
            // A JSON list; anything else is sent as typed, for the route spec to name what is wrong with it.
            const choices = item("choices").value.trim();
            if (choices !== "") {
              try { entry.choices = JSON.parse(choices); } catch { entry.choices = choices; }
            }
            return entry;
          }),
        };
      }),
    };
  }

  // -- the requirements.txt note ---------------------------------------------------------------------------------

  // Whether the server folder in the field has a requirements.txt at its root; asked as the field changes.
  let folderHasRequirements = false;
  let lookupTimer = null;

  function source() {
    return form.querySelector('input[name="source"]:checked').value;
  }

  // An environment installs the root requirements.txt only when no other file is named.
  function showRequirementsNote() {
    const known = source() === "directory" || (source() === "upload" && uploaded !== null);
    requirementsNote.hidden = !(folderHasRequirements && known && value("#requirements").trim() === "");
  }

  async function lookupRequirements() {
    if (source() === "upload") {
      let found = false;
      if (uploaded) {
        try {
          found = (await TrainML.api("GET", `/api/dashboard/requirements?upload=${encodeURIComponent(uploaded.id)}`)).found;
        } catch (err) {
          found = false; // the check at Next says what is wrong with the upload
        }
      }
      folderHasRequirements = found;
      showRequirementsNote();
      return found;
    }
    const directory = value("#model-directory").trim();
    let found = false;
    if (source() === "directory" && /^[\/~]/.test(directory)) { // the server answers for absolute paths only
      try {
        const answer = await TrainML.api("GET", `/api/dashboard/requirements?directory=${encodeURIComponent(directory)}`);
        found = answer.found;
      } catch (err) {
        found = false; // the folder check at Next says what is wrong with the path
      }
      if (value("#model-directory").trim() !== directory) return folderHasRequirements; // typed on meanwhile
    }
    folderHasRequirements = found;
    showRequirementsNote();
    return found;
  }

  // -- errors next to their fields ------------------------------------------------------------------------------

  function clearErrors() {
    for (const node of document.querySelectorAll(".field-error, .form-error")) node.textContent = "";
    for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  // "routes.0.body.1.default_value" -> the error slot of that parameter's Default Value, and its input.
  function slotFor(field) {
    const parts = field.split(".");
    if (parts[0] === "routes" && parts.length > 1) {
      const route = routesBox.children[Number(parts[1])];
      if (!route) return [form.querySelector('[data-error-for="routes"]'), null];
      if (parts.length === 2) return [route.querySelector('[data-error="route"]'), null];
      if (parts[2] === "body" && parts.length > 3) {
        const param = route.querySelectorAll("[data-param]")[Number(parts[3])];
        if (!param) return [route.querySelector('[data-error="body"]'), null];
        const key = parts[4] || "param";
        return [param.querySelector(`[data-error="${key}"]`) || param.querySelector('[data-error="param"]'),
                param.querySelector(`[data-input="${key}"]`)];
      }
      return [route.querySelector(`[data-error="${parts[2]}"]`) || route.querySelector('[data-error="route"]'),
              route.querySelector(`[data-input="${parts[2]}"]`)];
    }
    const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    return slot ? [slot, form.querySelector(`[data-path="${CSS.escape(field)}"]`)] : [form.querySelector('[data-error-for="form"]'), null];
  }

  function showErrors(fields) {
    clearErrors();
    let first = null;
    for (const { field, message } of fields) {
      const [slot, input] = slotFor(field);
      slot.textContent = slot.textContent ? `${slot.textContent}\n${message}` : message;
      if (!slot.id) slot.id = `error-${++uid}`;
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", slot.id);
      }
      first = first || input || slot;
    }
    if (first) {
      first.scrollIntoView({ block: "center" });
      if (first.focus) first.focus({ preventScroll: true });
    }
  }

  function fieldsOf(err) {
    if (err.body && Array.isArray(err.body.fields)) return err.body.fields;
    return [{ field: "form", message: err.message }];
  }

  // -- review ---------------------------------------------------------------------------------------------------

  function fact(list, term, text) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = text;
    list.append(dt, dd);
  }

  function showReview(payload, formData) {
    const facts = document.getElementById("review-facts");
    facts.replaceChildren();
    fact(facts, "Name", payload.name);
    const model = payload.model;
    const from = { upload: "Uploaded", directory: "Folder on the server", git: "Git repository", trainml: "Stored model" }[formData.model.source];
    fact(facts, "Model", `${from}: ${model.source_uri}${model.git_ref ? " @ " + model.git_ref : ""}`);
    const r = payload.resources;
    const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
    const gpus = r.gpu_count ? `${count(r.gpu_count, "GPU", "GPUs")} of type ${r.gpu_types.join(" or ")}` : "no GPU";
    fact(facts, "Resources", `${gpus}, ${count(r.cpu_count, "CPU", "CPUs")}, ${r.disk_size} GB disk, at most ${r.max_price} credits/hour`);
    if (payload.endpoint.replicas) fact(facts, "Replicas", count(payload.endpoint.replicas, "replica", "replicas"));

    const env = payload.environment || {};
    const environment = document.getElementById("review-environment");
    environment.replaceChildren();
    const python = document.getElementById("python");
    fact(environment, "Python", python.selectedIndex >= 0 ? python.options[python.selectedIndex].textContent : "The default");
    const pip = (env.packages && env.packages.pip) || [];
    fact(environment, "Python packages", pip.length ? pip.join(", ") : "None");
    let requirements;
    if (env.requirements) requirements = env.requirements;
    else if (!["directory", "upload"].includes(formData.model.source)) requirements = "requirements.txt at the model root, if there is one";
    else requirements = folderHasRequirements ? "requirements.txt (found in the folder)" : "None";
    fact(environment, "Requirements file", requirements);
    fact(environment, "Secrets", env.secrets && env.secrets.length
      ? env.secrets.map((name) => `${name} (as $${name})`).join(", ") : "None");
    // Each credential as the endpoint will see it: its tools' variable and the path the server found.
    const paths = new Map((env.env || []).map((item) => [item.key, item.value]));
    const credentials = formData.environment.credentials.map((kind) => {
      const variable = form.querySelector(`input[name="credential"][value="${kind}"]`).dataset.variable;
      return `${kind}: ${variable}=${paths.get(variable)}`;
    });
    fact(environment, "Credentials", credentials.length ? credentials.join(", ") : "None");

    const routes = document.getElementById("review-routes");
    routes.replaceChildren(...payload.endpoint.routes.map((route) => {
      const block = document.createElement("div");
      block.className = "route";
      const head = document.createElement("h3");
      head.className = "mono";
      head.textContent = `${route.verb} ${route.path} → ${route.file}:${route.function}`;
      const how = document.createElement("p");
      how.className = "muted";
      how.textContent = route.positional ? "Parameters passed as positional arguments" : "Parameters passed as keyword arguments";
      const params = document.createElement("p");
      params.className = "mono";
      params.textContent = route.body.length
        ? route.body.map((p) => `${p.name}: ${p.type}` + (p.items ? `[${p.items}]` : "")
            + (p.choices ? ` in (${p.choices.map((c) => JSON.stringify(c)).join(", ")})` : "")
            + (p.optional ? ` = ${p.default_value ?? "None"}` : "")).join(", ")
        : "No parameters";
      block.append(head, how);
      if (route.batch) {
        const batch = document.createElement("p");
        batch.className = "muted";
        batch.textContent = `Batched: up to ${route.batch.max_size} requests per call, waiting up to ${route.batch.max_wait_ms} ms to fill a batch`;
        block.append(batch);
      }
      block.append(params);
      return block;
    }));
    form.hidden = true;
    review.hidden = false;
    createError.textContent = "";
    document.getElementById("review-heading").focus();
    window.scrollTo(0, 0);
  }

  // -- events ---------------------------------------------------------------------------------------------------

  let checked = null; // the form as it was checked, so Create sends exactly what the review showed

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const next = document.getElementById("next");
    next.disabled = true;
    const data = collect();
    try {
      const [answer] = await Promise.all([TrainML.api("POST", "/api/dashboard/check", data), lookupRequirements()]);
      clearErrors();
      checked = data;
      showReview(answer.payload, data);
    } catch (err) {
      showErrors(fieldsOf(err));
    } finally {
      next.disabled = false;
    }
  });

  document.getElementById("back").addEventListener("click", () => {
    review.hidden = true;
    form.hidden = false;
  });

  createButton.addEventListener("click", async () => {
    createButton.disabled = true;
    createButton.textContent = "Creating…";
    try {
      const job = await TrainML.api("POST", "/api/dashboard/jobs", checked);
      window.location.assign(`${TrainML.ROOT}/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      if (err.body && Array.isArray(err.body.fields)) {
        review.hidden = true;
        form.hidden = false;
        showErrors(err.body.fields);
      } else {
        createError.textContent = err.message;
      }
      createButton.disabled = false;
      createButton.textContent = "Create";
    }
  });

  document.getElementById("add-route").addEventListener("click", addRoute);

  routesBox.addEventListener("click", (event) => {
    const route = event.target.closest("[data-route]");
    if (event.target.closest("[data-add-param]")) addParam(route);
    else if (event.target.closest("[data-remove-param]")) { event.target.closest("[data-param]").remove(); renumber(); }
    else if (event.target.closest("[data-remove-route]")) { route.remove(); renumber(); }
  });

  // Default Value applies to optional parameters only, as the route spec says.
  // The batch settings apply to a batched route only.
  routesBox.addEventListener("change", (event) => {
    if (event.target.dataset.input !== "batch") return;
    const route = event.target.closest("[data-route]");
    for (const name of ["batch_max_size", "batch_max_wait_ms"]) {
      route.querySelector(`[data-input="${name}"]`).disabled = !event.target.checked;
    }
  });

  // Items apply to a list parameter only.
  routesBox.addEventListener("change", (event) => {
    if (event.target.dataset.input !== "type") return;
    const items = event.target.closest("[data-param]").querySelector('[data-input="items"]');
    items.disabled = event.target.value !== "list";
  });

  routesBox.addEventListener("change", (event) => {
    if (event.target.dataset.input !== "optional") return;
    const input = event.target.closest("[data-param]").querySelector('[data-input="default_value"]');
    input.disabled = !event.target.checked;
  });

  // A CPU job holds no GPU: the count is 0 and fixed; a GPU type asks for at least one.
  const gpuType = document.getElementById("gpu-type"), gpuCount = document.getElementById("gpu-count");
  gpuType.addEventListener("change", () => {
    const cpu = gpuType.value === "cpu";
    gpuCount.disabled = cpu;
    if (cpu) gpuCount.value = "0";
    else if (gpuCount.value === "0" || gpuCount.value === "") gpuCount.value = "1";
  });

  // The model's routes.json, when the server can read the chosen model: fills the routes while none is typed.
  const routeFill = RouteFill.attach({
    addRoute, addParam, clear: () => routesBox.replaceChildren(),
    focus: () => routesBox.querySelector('[data-input="path"]').focus(),
    blank: () => [...routesBox.querySelectorAll('[data-input="file"], [data-input="function"], [data-input="name"]')]
      .every((input) => input.value.trim() === ""),
    query: () => {
      if (source() === "upload") return uploaded ? `upload=${encodeURIComponent(uploaded.id)}` : null;
      if (source() === "trainml") return value("#stored-model") ? `model=${encodeURIComponent(value("#stored-model"))}` : null;
      const directory = value("#model-directory").trim();
      return source() === "directory" && /^[\/~]/.test(directory) ? `directory=${encodeURIComponent(directory)}` : null;
    },
  });

  function lookupModel() {
    lookupRequirements();
    routeFill.lookup();
  }

  form.addEventListener("change", (event) => {
    if (event.target.name !== "source" && event.target.id !== "stored-model") return;
    for (const block of form.querySelectorAll("[data-source]")) block.hidden = block.dataset.source !== source();
    lookupModel();
  });

  document.getElementById("model-directory").addEventListener("input", () => {
    clearTimeout(lookupTimer);
    lookupTimer = setTimeout(lookupModel, 300); // once typing pauses, not per key
  });
  document.getElementById("requirements").addEventListener("input", showRequirementsNote);

  // A folder from this computer: uploaded as soon as it is picked or dropped; Next checks routes against it.
  let uploaded = null;
  ModelUpload.attach(document.getElementById("model-upload"), (upload) => { uploaded = upload; lookupModel(); });

  review.querySelector("#review-heading").tabIndex = -1;
  addRoute();
  if (source() === "trainml") routeFill.lookup(); // "Create endpoint from this model" opens with it chosen
  document.getElementById("name").focus();
})();

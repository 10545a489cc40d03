// Routes into the Create form from JSON: a routes.json at the root of the chosen model (looked up when an upload
// finishes, a server folder is typed or a stored model is chosen) or route JSON pasted by hand, in the route
// spec's shape (`trainml job create --route-file`). The form's blocks are filled as a person would fill them;
// the server checks the result at Next as it checks anything typed.
"use strict";

const RouteFill = (() => {
  function set(block, name, value) {
    const input = block.querySelector(`[data-input="${name}"]`);
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value === undefined || value === null ? "" : String(value);
    input.dispatchEvent(new Event("change", { bubbles: true })); // the form's own rules enable what goes with it
  }

  function text(value) {
    return typeof value === "string" ? value : value === undefined ? "" : JSON.stringify(value);
  }

  // Replace the form's routes with these (each a route spec dict); `form` gives addRoute, addParam and clear.
  function fill(routes, form) {
    form.clear();
    for (const raw of routes) {
      const route = form.addRoute();
      set(route, "verb", typeof raw.verb === "string" ? raw.verb.toUpperCase() : text(raw.verb));
      for (const name of ["path", "file", "function"]) set(route, name, text(raw[name]));
      set(route, "positional", raw.positional === true);
      set(route, "batch", Boolean(raw.batch));
      if (raw.batch && typeof raw.batch === "object") {
        set(route, "batch_max_size", raw.batch.max_size);
        set(route, "batch_max_wait_ms", raw.batch.max_wait_ms ?? 0);
      }
      for (const item of Array.isArray(raw.body) ? raw.body : []) {
        const param = form.addParam(route);
        set(param, "name", text(item.name));
        set(param, "type", text(item.type || "str"));
        set(param, "optional", item.optional === true);
        set(param, "default_value", item.default_value ?? "");
        set(param, "items", item.items ?? "");
        set(param, "choices", item.choices === undefined ? "" : JSON.stringify(item.choices));
      }
    }
    form.focus();
  }

  // Pasted text -> a list of route dicts, or an Error saying what is wrong with it.
  function parse(textValue) {
    let data;
    try {
      data = JSON.parse(textValue);
    } catch (err) {
      throw new Error(`not valid JSON (${err.message})`);
    }
    if (data && !Array.isArray(data) && typeof data === "object") data = [data];
    if (!Array.isArray(data) || !data.length || !data.every((r) => r && typeof r === "object" && !Array.isArray(r))) {
      throw new Error("not a route object or a list of them, as in routes.json");
    }
    return data;
  }

  // Wire the note beside Routes and the paste box; `form` adds blank() (nothing typed in any route yet) and
  // query() (the chosen model as the routes lookup's query string, or null when the server cannot read it).
  function attach(form) {
    const note = document.getElementById("routes-found");
    const noteText = note.querySelector("[data-text]");
    const use = note.querySelector("button");
    let found = null;

    async function lookup() {
      const query = form.query();
      found = null;
      note.hidden = true;
      if (!query) return;
      let answer;
      try {
        answer = await TrainML.api("GET", `/api/dashboard/routes?${query}`);
      } catch (err) {
        if (form.query() !== query || err.status !== 422) return; // the checks at Next say what is wrong
        noteText.textContent = err.message;
        use.hidden = true;
        note.hidden = false;
        return;
      }
      if (form.query() !== query || !answer.routes || !answer.routes.length) return;
      found = answer.routes;
      const count = `${found.length} ${found.length === 1 ? "route" : "routes"}`;
      if (form.blank()) {
        fill(found, form);
        noteText.textContent = `Routes filled from ${answer.file} in the model (${count}).`;
        use.hidden = true;
      } else {
        noteText.textContent = `${answer.file} in the model has ${count}.`;
        use.hidden = false;
      }
      note.hidden = false;
    }

    use.addEventListener("click", () => {
      if (!found) return;
      fill(found, form);
      noteText.textContent = `Routes filled from routes.json in the model (${found.length}).`;
      use.hidden = true;
    });

    const pasted = document.getElementById("route-json");
    const pasteError = document.querySelector('[data-error-for="route-json"]');
    document.getElementById("load-route-json").addEventListener("click", () => {
      pasteError.textContent = "";
      pasted.removeAttribute("aria-invalid");
      try {
        fill(parse(pasted.value), form);
      } catch (err) {
        pasteError.textContent = `The pasted routes are ${err.message}`;
        pasted.setAttribute("aria-invalid", "true");
        pasted.focus();
      }
    });
    return { lookup };
  }

  return { fill, parse, attach };
})();

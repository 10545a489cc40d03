// A model folder from this computer, sent to the control plane's upload API (POST /api/uploads) as the CLI
// sends one: a picked folder is packed here as a tar.gz, skipping what the CLI skips (.git, __pycache__,
// virtualenvs, tool caches: trainml_cli/contracts.py's list, via <body data-skipped-folders>); a dropped .tar.gz, .tgz or .zip goes as it is (the server converts a zip, with the
// same checks). The server checks and unpacks every archive the same way, whoever packed it.
"use strict";

const ModelUpload = (() => {
  const SKIP_DIRS = new Set(JSON.parse(document.body.dataset.skippedFolders || "[]"));
  const ARCHIVE = /\.(tar\.gz|tgz|zip)$/i;
  const encoder = new TextEncoder();

  function size(bytes) {
    const units = ["B", "KB", "MB", "GB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} ${value === 1 ? "byte" : "bytes"}`;
  }

  // Files of a picked folder, as [{file, name}] with names relative to the folder itself (its own name dropped,
  // as the CLI stores members relative to the folder), minus the skipped folders.
  function folderFiles(fileList) {
    const files = [...fileList].filter((f) => f.webkitRelativePath || f.name);
    const venvs = new Set();
    for (const f of files) {
      const parts = (f.webkitRelativePath || f.name).split("/");
      if (parts[parts.length - 1] === "pyvenv.cfg") venvs.add(parts.slice(1, -1).join("/"));
    }
    const kept = [];
    for (const f of files) {
      const parts = (f.webkitRelativePath || f.name).split("/").slice(1);
      if (!parts.length) continue;
      const folders = parts.slice(0, -1);
      if (folders.some((part) => SKIP_DIRS.has(part))) continue;
      if (folders.some((_, i) => venvs.has(folders.slice(0, i + 1).join("/")))) continue;
      kept.push({ file: f, name: parts.join("/") });
    }
    return kept.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  // -- a tar (ustar, with a pax header for names past ustar's fields) --------------------------------------------

  function field(block, offset, length, text) {
    block.set(encoder.encode(text).subarray(0, length), offset);
  }

  function octal(block, offset, length, value) {
    field(block, offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
  }

  function header(name, bytes, mtime, type) {
    const block = new Uint8Array(512);
    const encoded = encoder.encode(name);
    let prefix = "", short = name;
    if (encoded.length > 100) { // ustar splits a long name at a "/" into prefix (155) and name (100)
      const cut = name.lastIndexOf("/", name.length - 1);
      if (cut > 0 && encoder.encode(name.slice(0, cut)).length <= 155 && encoder.encode(name.slice(cut + 1)).length <= 100) {
        prefix = name.slice(0, cut);
        short = name.slice(cut + 1);
      } else {
        short = name.slice(0, 99); // the pax header before it carries the whole name
      }
    }
    field(block, 0, 100, short);
    octal(block, 100, 8, type === "5" ? 0o755 : 0o644);
    octal(block, 108, 8, 0);
    octal(block, 116, 8, 0);
    octal(block, 124, 12, bytes);
    octal(block, 136, 12, Math.floor(mtime / 1000));
    field(block, 148, 8, "        ");
    field(block, 156, 1, type);
    field(block, 257, 6, "ustar\0");
    field(block, 263, 2, "00");
    field(block, 345, 155, prefix);
    let sum = 0;
    for (const byte of block) sum += byte;
    field(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
    return block;
  }

  function padding(bytes) {
    return new Uint8Array((512 - (bytes % 512)) % 512);
  }

  function paxFor(name) {
    if (encoder.encode(name).length <= 100) return [];
    const tail = name.lastIndexOf("/");
    if (tail > 0 && encoder.encode(name.slice(0, tail)).length <= 155 && encoder.encode(name.slice(tail + 1)).length <= 100) return [];
    const body = ` path=${name}\n`;
    let length = encoder.encode(body).length;
    length += String(length + String(length).length).length; // the record counts its own length digits
    const record = encoder.encode(`${length}${body}`);
    return [header("PaxHeader", record.length, Date.now(), "x"), record, padding(record.length)];
  }

  // The folder's files as a gzipped tar Blob, folders included (as the CLI packs them).
  async function pack(entries) {
    const parts = [];
    const folders = new Set();
    for (const { file, name } of entries) {
      const segments = name.split("/");
      for (let i = 1; i < segments.length; i++) {
        const folder = segments.slice(0, i).join("/");
        if (folders.has(folder)) continue;
        folders.add(folder);
        parts.push(...paxFor(folder + "/"), header(folder + "/", 0, file.lastModified, "5"));
      }
      parts.push(...paxFor(name), header(name, file.size, file.lastModified, "0"), file, padding(file.size));
    }
    parts.push(new Uint8Array(1024));
    const gzipped = new Blob(parts).stream().pipeThrough(new CompressionStream("gzip"));
    return new Response(gzipped).blob();
  }

  // -- sending --------------------------------------------------------------------------------------------------

  // POST the archive with progress; resolves to the server's {id, size, files, unpacked_size}.
  function send(blob, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/api/uploads");
      request.setRequestHeader("Content-Type", "application/octet-stream");
      request.setRequestHeader("X-TrainML-Dashboard", "1"); // the server refuses cookie-authenticated changes without it
      request.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : blob.size);
      request.onload = () => {
        let body = null;
        try { body = JSON.parse(request.responseText); } catch (err) { body = null; }
        if (request.status === 201 && body) resolve(body);
        else reject(new Error((body && body.message) || `the upload failed (HTTP ${request.status})`));
      };
      request.onerror = () => reject(new Error("the upload failed: the control plane could not be reached"));
      request.send(blob);
    });
  }

  // Wire a drop zone: `root` holds [data-upload-folder] (a webkitdirectory input), [data-upload-file], a
  // <progress>, a status line and an error slot. onChange(upload or null) tells the form what is ready.
  function attach(root, onChange) {
    const limit = Number(root.dataset.maxBytes);
    const folderInput = root.querySelector("[data-upload-folder]");
    const fileInput = root.querySelector("[data-upload-file]");
    const bar = root.querySelector("progress");
    const status = root.querySelector("[data-upload-status]");
    const error = root.querySelector("[data-upload-error]");
    let current = null, busy = false;

    function fail(message) {
      error.textContent = message;
      status.textContent = "";
      bar.hidden = true;
      onChange(null);
    }

    async function upload(label, makeBlob) {
      if (busy) return;
      busy = true;
      error.textContent = "";
      current = null;
      onChange(null);
      try {
        status.textContent = `Packing ${label}…`;
        const blob = await makeBlob();
        if (blob.size > limit) return fail(`${label} is ${size(blob.size)}; uploads may be at most ${size(limit)}.`);
        bar.hidden = false;
        bar.max = blob.size;
        bar.value = 0;
        const answer = await send(blob, (sent, total) => {
          bar.max = total;
          bar.value = sent;
          status.textContent = `Sending ${label}: ${size(sent)} of ${size(total)}`;
        });
        current = { id: answer.id, name: label, files: answer.files, size: answer.unpacked_size };
        bar.value = bar.max;
        status.textContent = `${label}: ${answer.files} ${answer.files === 1 ? "file" : "files"}, ${size(answer.unpacked_size)}, uploaded.`;
        root.dataset.uploaded = answer.id;
        onChange(current);
      } catch (err) {
        fail(err.message);
      } finally {
        busy = false;
      }
    }

    function takeFolder(fileList) {
      const entries = folderFiles(fileList);
      if (!entries.length) return fail("That folder has no files to send (.git, __pycache__ and virtualenvs are skipped).");
      const first = fileList[0].webkitRelativePath || "";
      upload(first.split("/")[0] || "the folder", () => pack(entries));
    }

    function takeArchive(file) {
      if (!ARCHIVE.test(file.name)) return fail(`${file.name} is not a .tar.gz, .tgz or .zip; drop one of those, or pick a folder.`);
      upload(file.name, async () => file);
    }

    folderInput.addEventListener("change", () => folderInput.files.length && takeFolder(folderInput.files));
    fileInput.addEventListener("change", () => fileInput.files.length && takeArchive(fileInput.files[0]));
    root.addEventListener("dragover", (event) => { event.preventDefault(); root.classList.add("dragging"); });
    root.addEventListener("dragleave", () => root.classList.remove("dragging"));
    root.addEventListener("drop", async (event) => {
      event.preventDefault();
      root.classList.remove("dragging");
      const item = event.dataTransfer.items && event.dataTransfer.items[0];
      const entry = item && item.webkitGetAsEntry && item.webkitGetAsEntry();
      if (entry && entry.isDirectory) return takeFolder(await readDropped(entry));
      if (event.dataTransfer.files.length) takeArchive(event.dataTransfer.files[0]);
    });
    return { current: () => current };
  }

  // A dropped folder, read as the picker would list it (File objects with webkitRelativePath-like names).
  async function readDropped(rootEntry) {
    const out = [];
    async function walk(entry, path) {
      if (entry.isFile) {
        const file = await new Promise((ok, no) => entry.file(ok, no));
        Object.defineProperty(file, "webkitRelativePath", { value: path });
        out.push(file);
        return;
      }
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, no) => reader.readEntries(ok, no));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${path}/${child.name}`);
      }
    }
    await walk(rootEntry, rootEntry.name);
    return out;
  }

  return { attach, pack, folderFiles, size };
})();

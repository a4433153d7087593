// ocrq web page: live progress (server-sent events), the page viewer's cell panel, upload checks.
// Everything here is an enhancement: every page works without it.
"use strict";

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function pagesText(job) {
  let text = job.done + " done · " + job.failed + " failed";
  if (job.degraded !== null && job.degraded !== undefined) text += " · " + job.degraded + " degraded";
  return text + " of " + job.total;
}

function updateJob(element, job) {
  const field = (name) => element.querySelector('[data-field="' + name + '"]');
  const status = field("status");
  if (status) {
    status.textContent = job.status;
    status.className = "status s-" + job.status;
  }
  const bar = field("bar");
  if (bar) {
    bar.max = job.total || 1;
    bar.value = job.done + job.failed;
    bar.textContent = (job.total ? Math.round(100 * (job.done + job.failed) / job.total) : 0) + "%";
  }
  field("pages").textContent = pagesText(job);
  field("rate").textContent = job.rate ? job.rate.toFixed(2) + " pages/s" : "";
  field("eta").textContent = job.eta_s !== null ? "ETA " + duration(job.eta_s) : "";
}

// A job page renders what a finished job offers: the results and downloads appear once the job
// has ended, and the redo button goes once a redo has read the last degraded page.
function pageIsStale(element, job) {
  const wasFinished = element.dataset.finished === "true";  // as the server rendered it, then as streamed
  const redoEnded = Number(element.dataset.degraded || 0) > 0 && job.degraded === 0;
  return job.finished && (!wasFinished || redoEnded);
}

function followJobs(source) {
  const singleJob = source.closest("[data-job-id]");
  const events = new EventSource(source.dataset.liveUrl);
  events.addEventListener("jobs", (event) => {
    for (const job of JSON.parse(event.data)) {
      const element = document.querySelector('[data-job-id="' + job.id + '"]');
      if (!element) continue;
      const stale = pageIsStale(element, job);
      updateJob(element, job);
      element.dataset.finished = job.finished ? "true" : "false";
      if (singleJob && stale) {
        events.close();
        window.location.reload();
      }
    }
  });
}

function chooseCell(link, focusPanel) {
  const order = link.dataset.cell;
  const item = document.getElementById("cell-" + order);
  document.querySelectorAll(".cell.selected, .cells li.selected").forEach((e) => e.classList.remove("selected"));
  link.classList.add("selected");
  if (item) item.classList.add("selected");
  document.getElementById("cell-title").textContent =
    "Cell " + order + ": " + (item ? item.dataset.category : "");
  document.getElementById("cell-text").textContent = item ? item.querySelector(".cell-body").textContent : "";
  history.replaceState(null, "", "?cell=" + order);
  if (focusPanel) document.getElementById("cell-panel").focus({ preventScroll: window.innerWidth >= 900 });
}

// Left and right arrows turn pages in the viewer (not while typing, not with a modifier held).
function pageKeys(event) {
  if (event.altKey || event.ctrlKey || event.metaKey || event.target.closest("input, textarea, select")) return;
  const link = document.querySelector(event.key === "ArrowLeft" ? 'a[rel="prev"]' : 'a[rel="next"]');
  if (link && (event.key === "ArrowLeft" || event.key === "ArrowRight")) window.location.href = link.href;
}

function setUpViewer(svg) {
  document.addEventListener("keydown", pageKeys);
  svg.querySelectorAll("a.cell").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      chooseCell(link, event.detail === 0);  // keyboard activation moves focus to the text
    });
  });
}

function setUpUpload(form) {
  const maxBytes = Number(form.dataset.maxBytes), maxFiles = Number(form.dataset.maxFiles);
  const error = document.getElementById("upload-error");
  form.addEventListener("submit", (event) => {
    const files = [...form.querySelectorAll('input[type="file"]')].flatMap((input) => [...input.files]);
    const bytes = files.reduce((sum, file) => sum + file.size, 0);
    let problem = "";
    if (!files.length) problem = "Choose some files or a folder first.";
    else if (bytes > maxBytes) problem = "These files come to " + bytes.toLocaleString("en") +
      " bytes; this server takes at most " + maxBytes.toLocaleString("en") + " bytes per job. Split them into smaller jobs.";
    else if (files.length > maxFiles) problem = files.length + " files; this server takes at most " + maxFiles + " per job.";
    error.hidden = !problem;
    error.textContent = problem;
    if (problem) {
      event.preventDefault();
      error.focus();
    }
  });
  form.querySelectorAll(".drop").forEach((zone) => setUpDropZone(zone, zone.querySelector('input[type="file"]')));
  error.tabIndex = -1;
}

// Files or folders dropped anywhere on a zone land in its file input (folders walked, like the picker).
function setUpDropZone(zone, input) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = await droppedFiles(event.dataTransfer);
    const chosen = new DataTransfer();
    files.forEach((file) => chosen.items.add(file));
    input.files = chosen.files;
    zone.querySelector(".dropped").textContent = files.length + " file(s) ready: " +
      files.slice(0, 5).map((file) => file.name).join(", ") + (files.length > 5 ? ", …" : "");
  });
}

async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => [item.webkitGetAsEntry && item.webkitGetAsEntry(), item]);
  const files = [];
  for (const [entry, item] of entries) {
    if (entry && entry.isDirectory) files.push(...(await folderFiles(entry)));
    else if (item.kind === "file") files.push(item.getAsFile());
  }
  return files;
}

async function folderFiles(folder) {
  const reader = folder.createReader(), files = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return files;
    for (const entry of batch) {
      if (entry.isDirectory) files.push(...(await folderFiles(entry)));
      else files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    }
  }
}

// A file dropped beside the zones must not replace the page with the file.
["dragover", "drop"].forEach((name) => window.addEventListener(name, (event) => event.preventDefault()));

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-url]").forEach(followJobs);
  const svg = document.getElementById("page-svg");
  if (svg) setUpViewer(svg);
  const upload = document.getElementById("upload-form");
  if (upload) setUpUpload(upload);
});

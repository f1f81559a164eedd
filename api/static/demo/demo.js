// Backdrop demo: upload a photo to POST /v1/jobs, poll GET /v1/jobs/<id>, show and offer the result.
"use strict";

(function () {
  const API_KEY_STORAGE = "backdrop.apiKey";
  const DEFAULT_POLL_SECONDS = 1;
  const MAX_POLL_SECONDS = 30;
  const GIVE_UP_AFTER_MS = 15 * 60 * 1000;
  const MAX_NETWORK_RETRIES = 5;

  const $ = (id) => document.getElementById(id);
  const form = $("job-form");
  const photoInput = $("photo");
  const photoName = $("photo-name");
  const dropzone = $("dropzone");
  const customColor = $("custom-color");
  const customColorValue = $("custom-color-value");
  const customRadio = $("bg-custom");
  const formatSelect = $("format");
  const apiKeyInput = $("api-key");
  const apiKeyBox = $("api-key-box");
  const submitButton = $("submit");
  const progress = $("progress");
  const statusText = $("status");
  const errorBox = $("error");
  const errorCode = $("error-code");
  const errorMessage = $("error-message");
  const images = $("images");
  const originalFrame = $("original-frame");
  const originalImage = $("original");
  const resultFrame = $("result-frame");
  const resultImage = $("result");
  const resultInfo = $("result-info");
  const downloadLink = $("download");

  let selectedFile = null;
  let originalUrl = null;
  let formatBeforeTransparent = null;
  let run = 0; // increases with every submission; a stale poll loop stops when it sees a newer one

  // --- API key: optional, remembered in this browser ---------------------------------------------

  function readStoredKey() {
    try {
      return window.localStorage.getItem(API_KEY_STORAGE) || "";
    } catch (err) {
      return ""; // storage can be disabled (private modes, policies)
    }
  }

  function storeKey(value) {
    try {
      if (value) {
        window.localStorage.setItem(API_KEY_STORAGE, value);
      } else {
        window.localStorage.removeItem(API_KEY_STORAGE);
      }
    } catch (err) {
      // Not fatal: the key is still used for this page.
    }
  }

  function authHeaders() {
    const key = apiKeyInput.value.trim();
    return key ? { Authorization: "Bearer " + key } : {};
  }

  apiKeyInput.value = readStoredKey();
  if (apiKeyInput.value) {
    apiKeyBox.open = true;
  }
  apiKeyInput.addEventListener("input", () => storeKey(apiKeyInput.value.trim()));

  // --- status, progress and errors -----------------------------------------------------------------

  function setStatus(state, text, fraction) {
    statusText.dataset.state = state;
    statusText.textContent = text;
    if (state === "idle") {
      progress.hidden = true;
      return;
    }
    progress.hidden = false;
    if (typeof fraction === "number") {
      progress.value = Math.max(0, Math.min(1, fraction));
    } else {
      progress.removeAttribute("value"); // indeterminate
    }
  }

  function showError(code, message) {
    errorCode.textContent = code;
    errorMessage.textContent = message;
    errorBox.hidden = false;
    if (code === "unauthorized" || code === "forbidden" || code === "invalid_api_key") {
      apiKeyBox.open = true;
    }
  }

  function clearError() {
    errorBox.hidden = true;
    errorCode.textContent = "";
    errorMessage.textContent = "";
  }

  function fail(code, message) {
    setStatus("failed", "Failed", 0);
    progress.hidden = true;
    showError(code, message);
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
  }

  // --- photo: file input and drag and drop ---------------------------------------------------------

  function formatBytes(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function choosePhoto(file) {
    if (!file) return;
    run += 1; // a job still running for the previous photo is no longer followed
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
    selectedFile = file;
    photoName.textContent = file.name + " (" + formatBytes(file.size) + ")";
    if (originalUrl) URL.revokeObjectURL(originalUrl);
    originalUrl = URL.createObjectURL(file);
    originalImage.src = originalUrl;
    originalFrame.hidden = false;
    resultFrame.hidden = true;
    images.hidden = false;
    clearError();
    setStatus("idle", "Ready: choose a background and press \u201cReplace background\u201d.");
  }

  photoInput.addEventListener("change", () => choosePhoto(photoInput.files && photoInput.files[0]));

  ["dragenter", "dragover"].forEach((type) =>
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      dropzone.classList.add("dragging");
    })
  );
  ["dragleave", "dragend"].forEach((type) =>
    dropzone.addEventListener(type, (event) => {
      if (event.target === dropzone || !dropzone.contains(event.relatedTarget)) {
        dropzone.classList.remove("dragging");
      }
    })
  );
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || files.length === 0) return;
    try {
      photoInput.files = files; // keeps the input in step with what was dropped
    } catch (err) {
      // Older browsers: the dropped file is still used.
    }
    choosePhoto(files[0]);
  });
  // A photo dropped beside the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // --- background and format -----------------------------------------------------------------------

  function selectedBackground() {
    const checked = form.querySelector('input[name="background"]:checked');
    const value = checked ? checked.value : "blue";
    return value === "custom" ? customColor.value.toLowerCase() : value;
  }

  function showCustomColor() {
    customColorValue.textContent = customColor.value.toLowerCase();
    document.documentElement.style.setProperty("--custom", customColor.value);
  }

  function syncFormat() {
    const transparent = selectedBackground() === "transparent";
    if (transparent && !formatSelect.disabled) {
      formatBeforeTransparent = formatSelect.value;
      formatSelect.value = "png";
      formatSelect.disabled = true;
      formatSelect.title = "A transparent background needs PNG";
    } else if (!transparent && formatSelect.disabled) {
      formatSelect.disabled = false;
      formatSelect.value = formatBeforeTransparent || "";
      formatSelect.removeAttribute("title");
    }
  }

  customColor.addEventListener("input", () => {
    customRadio.checked = true;
    showCustomColor();
    syncFormat();
  });
  customColor.addEventListener("change", showCustomColor);
  form.querySelectorAll('input[name="background"]').forEach((radio) => radio.addEventListener("change", syncFormat));
  showCustomColor();
  syncFormat();

  // --- HTTP ----------------------------------------------------------------------------------------

  function parseError(status, body) {
    if (body && body.error && body.error.code) {
      return { code: String(body.error.code), message: String(body.error.message || "") };
    }
    return { code: "http_" + status, message: "The server answered " + status + " without an error description." };
  }

  function retryAfterSeconds(header) {
    if (!header) return DEFAULT_POLL_SECONDS;
    let seconds = Number(header.trim());
    if (!Number.isFinite(seconds)) {
      const date = Date.parse(header); // Retry-After may also be an HTTP date
      seconds = Number.isNaN(date) ? DEFAULT_POLL_SECONDS : (date - Date.now()) / 1000;
    }
    return Math.min(MAX_POLL_SECONDS, Math.max(0.2, seconds));
  }

  function sleep(seconds) {
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  // The upload goes through XMLHttpRequest, which reports upload progress (fetch does not).
  function upload(formData, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "v1/jobs");
      xhr.responseType = "text";
      const headers = authHeaders();
      Object.keys(headers).forEach((name) => xhr.setRequestHeader(name, headers[name]));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (err) {
          body = null;
        }
        resolve({ status: xhr.status, body: body, retryAfter: xhr.getResponseHeader("Retry-After") });
      });
      xhr.addEventListener("error", () => reject(new Error("the upload failed (network error)")));
      xhr.addEventListener("abort", () => reject(new Error("the upload was aborted")));
      xhr.send(formData);
    });
  }

  async function getJob(id) {
    const response = await fetch("v1/jobs/" + encodeURIComponent(id), {
      headers: Object.assign({ Accept: "application/json" }, authHeaders()),
      cache: "no-store",
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    return { status: response.status, body: body, retryAfter: response.headers.get("Retry-After") };
  }

  // --- one job, from upload to result --------------------------------------------------------------

  function showPending(job) {
    if (job.status === "processing") {
      const attempt = job.attempts > 1 ? " (attempt " + job.attempts + ")" : "";
      setStatus("processing", "Processing\u2026" + attempt);
    } else {
      setStatus("queued", "Queued: waiting for a worker\u2026");
    }
  }

  function showResult(job, background) {
    const composite = job.results && job.results.composite;
    if (!composite || !composite.url) {
      fail("no_result", "The job succeeded but lists no composite result.");
      return;
    }
    const extension = composite.format === "jpeg" ? "jpg" : composite.format || "img";
    resultImage.classList.toggle("checkerboard", background === "transparent");
    resultImage.src = composite.url;
    downloadLink.href = composite.url;
    downloadLink.setAttribute("download", "backdrop-" + job.id + "." + extension);
    const details = [];
    if (composite.width && composite.height) details.push(composite.width + "\u00d7" + composite.height);
    if (composite.format) details.push(composite.format.toUpperCase());
    if (composite.bytes) details.push(formatBytes(composite.bytes));
    resultInfo.textContent = details.length ? "(" + details.join(", ") + ")" : "";
    resultFrame.hidden = false;
    images.hidden = false;
    setStatus("done", "Done", 1);
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
  }

  async function poll(id, background, firstWait, myRun) {
    const started = Date.now();
    let wait = firstWait;
    let networkErrors = 0;
    for (;;) {
      await sleep(wait);
      if (myRun !== run) return;
      if (Date.now() - started > GIVE_UP_AFTER_MS) {
        fail("timeout", "The job " + id + " did not finish in time; try again later.");
        return;
      }
      let answer;
      try {
        answer = await getJob(id);
      } catch (err) {
        networkErrors += 1;
        if (networkErrors > MAX_NETWORK_RETRIES) {
          fail("network_error", "The server could not be reached: " + err.message);
          return;
        }
        wait = Math.min(MAX_POLL_SECONDS, DEFAULT_POLL_SECONDS * 2 ** networkErrors);
        continue;
      }
      if (myRun !== run) return;
      networkErrors = 0;
      if (answer.status !== 200 || !answer.body) {
        const error = parseError(answer.status, answer.body);
        fail(error.code, error.message);
        return;
      }
      const job = answer.body;
      if (job.status === "succeeded") {
        showResult(job, background);
        return;
      }
      if (job.status === "failed") {
        const error = job.error || { code: "failed", message: "The job failed." };
        fail(error.code, error.message);
        return;
      }
      showPending(job);
      wait = retryAfterSeconds(answer.retryAfter);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    if (!selectedFile) {
      showError("no_photo", "Choose a photo first.");
      photoInput.focus();
      return;
    }
    run += 1;
    const myRun = run;
    const background = selectedBackground();
    const data = new FormData();
    data.append("image", selectedFile, selectedFile.name || "photo");
    data.append("background", background);
    const format = background === "transparent" ? "png" : formatSelect.value;
    if (format) data.append("format", format);

    submitButton.disabled = true;
    form.setAttribute("aria-busy", "true");
    resultFrame.hidden = true;
    resultImage.removeAttribute("src");
    downloadLink.setAttribute("href", "#");
    setStatus("uploading", "Uploading\u2026", 0);

    let answer;
    try {
      answer = await upload(data, (fraction) => {
        if (myRun === run) setStatus("uploading", "Uploading\u2026 " + Math.round(fraction * 100) + "%", fraction);
      });
    } catch (err) {
      if (myRun === run) fail("network_error", "The photo could not be sent: " + err.message);
      return;
    }
    if (myRun !== run) return;
    if (answer.status !== 202 || !answer.body || !answer.body.id) {
      const error = parseError(answer.status, answer.body);
      fail(error.code, error.message);
      return;
    }
    const job = answer.body;
    showPending(job);
    await poll(job.id, background, retryAfterSeconds(answer.retryAfter), myRun);
  });

  resultImage.addEventListener("error", () => {
    if (resultImage.getAttribute("src")) {
      showError("result_unavailable", "The result could not be loaded; its link may have expired.");
    }
  });

  setStatus("idle", "Choose a photo to start.");
})();

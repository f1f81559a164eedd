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
  const customSwatch = customColor.closest(".swatch");
  const blurHint = $("blur-hint");
  const backgroundImageRow = $("background-image-row");
  const backgroundImageInput = $("background-image");
  const backgroundImageName = $("background-image-name");
  const photoButton = $("photo-button");
  const formatSelect = $("format");
  const apiKeyInput = $("api-key");
  const apiKeyBox = $("api-key-box");
  const submitButton = $("submit");
  const progress = $("progress");
  const statusText = $("status");
  const errorBox = $("error");
  const errorTitle = $("error-title");
  const errorMessage = $("error-message");
  const errorDetail = $("error-detail");
  const errorServerMessage = $("error-server-message");
  const errorCode = $("error-code");
  const images = $("images");
  const originalFrame = $("original-frame");
  const originalImage = $("original");
  const originalNote = $("original-note");
  const resultFrame = $("result-frame");
  const resultImage = $("result");
  const resultInfo = $("result-info");
  const downloadLink = $("download");

  let selectedFile = null;
  let backgroundFile = null;
  let scrolledForRun = -1; // the run whose result was last scrolled into view
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

  // What each error means to the person at the page; the server's own message is shown below it.
  const SEND_AGAIN = "Submit the photo again to start over.";
  const ERRORS = {
    no_photo: ["No photo chosen", "Choose a photo first: drop it on the box above or use \u201cchoose a photo\u201d."],
    not_an_image: ["This file is not a photo", "Choose a JPEG, PNG, WebP, BMP, TIFF or GIF image."],
    no_background_image: [
      "No background image chosen",
      "Choose the image to put behind the person, or pick another background.",
    ],
    background_not_an_image: [
      "The background is not an image",
      "Choose a JPEG, PNG, WebP, BMP, TIFF or GIF image for the background.",
    ],
    unsupported_image: ["This file is not a photo Backdrop can read", "Send a JPEG, PNG, WebP, BMP, TIFF or GIF image."],
    corrupt_image: ["This photo could not be read", "The file seems damaged or incomplete. Save or export it again."],
    image_too_large: ["This photo is too large", "It has more pixels than this server accepts; make it smaller."],
    image_too_small: ["This photo is too small", "Very small images cannot be processed; use a larger photo."],
    payload_too_large: ["The file is too large to upload", "Choose a smaller file."],
    invalid_option: ["A choice was not accepted", "Check the background and format, then try again."],
    invalid_input: ["The request was not accepted", "Check the photo and your choices, then try again."],
    bad_request: ["The request was not accepted", "Reload the page and try again."],
    unauthorized: ["An API key is needed", "This server asks for an API key: enter it under \u201cAPI key\u201d."],
    forbidden: ["This API key may not do that", "Check the key under \u201cAPI key\u201d."],
    invalid_api_key: ["This API key is not valid", "Check the key under \u201cAPI key\u201d."],
    rate_limited: ["Too many requests", "Wait a moment, then try again."],
    too_many_pending_jobs: ["Too many photos waiting", "Wait for your other photos to finish, then try again."],
    queue_unavailable: ["The service is not available", "Its job queue cannot be reached; try again in a minute."],
    storage_unavailable: ["The service is not available", "Its storage cannot be reached; try again in a minute."],
    fetch_failed: ["The photo could not be fetched", "Its address could not be read; upload the file instead."],
    unsafe_url: ["This address is not allowed", "Upload the photo as a file instead."],
    model_error: ["The server cannot process photos", "Its model is not working; tell whoever runs this server."],
    weights_missing: ["The server cannot process photos", "Its model is missing; tell whoever runs this server."],
    invalid_checkpoint: ["The server cannot process photos", "Its model is damaged; tell whoever runs this server."],
    internal_error: ["The server had a problem", "Try again; if it keeps happening, tell whoever runs this server."],
    not_found: ["This job is no longer available", "It may have expired or been deleted. " + SEND_AGAIN],
    canceled: ["The job was cancelled", SEND_AGAIN],
    network_error: ["The server could not be reached", "Check your connection, then try again."],
    timeout: ["This is taking too long", "The job did not finish in time; try again later."],
    no_result: ["No result came back", "The job finished without a result image. " + SEND_AGAIN],
    result_unavailable: ["The result could not be loaded", "Its link may have expired. " + SEND_AGAIN],
  };
  const UNKNOWN_ERROR = ["Something went wrong", "Try again; if it keeps happening, tell whoever runs this server."];

  function explain(code) {
    if (Object.prototype.hasOwnProperty.call(ERRORS, code)) return ERRORS[code];
    if (/^http_5\d\d$/.test(code)) return ERRORS.internal_error;
    return UNKNOWN_ERROR;
  }

  // serverMessage: what the API said (shown as a detail, with its code); absent for the page's own checks.
  function showError(code, message, serverMessage) {
    const [title, text] = explain(code);
    errorBox.dataset.code = code;
    errorTitle.textContent = title;
    errorMessage.textContent = message || text;
    errorCode.textContent = code;
    errorServerMessage.textContent = serverMessage || "";
    errorDetail.hidden = !serverMessage;
    errorBox.hidden = false;
    if (code === "unauthorized" || code === "forbidden" || code === "invalid_api_key") {
      apiKeyBox.open = true;
    }
  }

  function clearError() {
    errorBox.hidden = true;
    delete errorBox.dataset.code;
    errorTitle.textContent = "";
    errorMessage.textContent = "";
    errorServerMessage.textContent = "";
    errorCode.textContent = "";
    errorDetail.hidden = true;
  }

  function fail(code, serverMessage) {
    setStatus("failed", "Failed", 0);
    progress.hidden = true;
    showError(code, "", serverMessage);
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
  }

  // --- photo: file input and drag and drop ---------------------------------------------------------

  function formatBytes(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  // What the server decodes, told apart by the first bytes (a file's name or type may say anything).
  const SIGNATURES = [
    [0xff, 0xd8, 0xff], // JPEG
    [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], // PNG
    [0x47, 0x49, 0x46, 0x38], // GIF8
    [0x42, 0x4d], // BMP
    [0x49, 0x49, 0x2a, 0x00], // TIFF, little-endian
    [0x4d, 0x4d, 0x00, 0x2a], // TIFF, big-endian
  ];

  function startsWith(bytes, signature, offset) {
    return signature.every((byte, i) => bytes[(offset || 0) + i] === byte);
  }

  async function isImageFile(file) {
    let bytes;
    try {
      bytes = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    } catch (err) {
      return false; // unreadable here: it could not be uploaded either
    }
    const webp = startsWith(bytes, [0x52, 0x49, 0x46, 0x46]) && startsWith(bytes, [0x57, 0x45, 0x42, 0x50], 8);
    return webp || SIGNATURES.some((signature) => startsWith(bytes, signature));
  }

  function forgetPhoto() {
    selectedFile = null;
    photoInput.value = ""; // the same file can be chosen again once fixed
    photoName.textContent = "";
    photoButton.textContent = "choose a photo";
    if (originalUrl) URL.revokeObjectURL(originalUrl);
    originalUrl = null;
    originalImage.removeAttribute("src");
    originalFrame.hidden = true;
    resultFrame.hidden = true;
    images.hidden = true;
  }

  async function choosePhoto(file) {
    if (!file) return;
    run += 1; // a job still running for the previous photo is no longer followed
    const myRun = run;
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
    clearError();
    const image = await isImageFile(file);
    if (myRun !== run) return; // another photo was chosen meanwhile
    if (!image) {
      forgetPhoto();
      setStatus("idle", "Choose a photo to start.");
      showError("not_an_image", "\u201c" + file.name + "\u201d is not a JPEG, PNG, WebP, BMP, TIFF or GIF image.");
      return;
    }
    selectedFile = file;
    photoName.textContent = file.name + " (" + formatBytes(file.size) + ")";
    photoButton.textContent = "choose another photo";
    if (originalUrl) URL.revokeObjectURL(originalUrl);
    originalUrl = URL.createObjectURL(file);
    originalNote.hidden = true;
    originalImage.hidden = false;
    originalImage.src = originalUrl;
    originalFrame.hidden = false;
    resultFrame.hidden = true;
    images.hidden = false;
    setStatus("idle", "Ready: choose a background and press \u201cReplace background\u201d.");
  }

  // A format the browser cannot show (TIFF in most): a note, not a broken image.
  originalImage.addEventListener("error", () => {
    if (!originalImage.getAttribute("src")) return;
    originalImage.hidden = true;
    originalNote.hidden = false;
  });

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

  function syncBackground() {
    const background = selectedBackground();
    backgroundImageRow.hidden = background !== "image";
    blurHint.hidden = background !== "blur";
    syncFormat();
  }

  function selectCustom() {
    if (!customRadio.checked) {
      customRadio.checked = true;
      syncBackground();
    }
  }

  customColor.addEventListener("input", () => {
    selectCustom();
    showCustomColor();
  });
  customColor.addEventListener("change", showCustomColor);
  // The whole swatch selects the colour; its chip (the colour input) also opens the picker.
  customSwatch.addEventListener("click", selectCustom);
  form.querySelectorAll('input[name="background"]').forEach((radio) => radio.addEventListener("change", syncBackground));

  backgroundImageInput.addEventListener("change", async () => {
    const file = backgroundImageInput.files && backgroundImageInput.files[0];
    backgroundFile = null;
    clearError();
    if (!file) return;
    if (!(await isImageFile(file))) {
      backgroundImageInput.value = "";
      backgroundImageName.textContent = "Scaled to cover the photo.";
      showError("background_not_an_image", "\u201c" + file.name + "\u201d is not an image Backdrop can read.");
      return;
    }
    backgroundFile = file;
    backgroundImageName.textContent = file.name + " (" + formatBytes(file.size) + ")";
  });

  showCustomColor();
  syncBackground();

  // --- HTTP ----------------------------------------------------------------------------------------

  function parseError(status, body) {
    if (body && body.error && body.error.code) {
      return { code: String(body.error.code), message: String(body.error.message || "") };
    }
    return { code: "http_" + status, message: "HTTP " + status + ", without an error description" };
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
      fail("no_result", "");
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
    resultFrame.dataset.run = String(run);
    setStatus("done", "Done", 1);
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
    if (resultImage.complete && resultImage.naturalWidth > 0) bringResultIntoView();
  }

  // On a narrow screen the result lies below the form: bring it up once it has its size.
  function bringResultIntoView() {
    const forRun = Number(resultFrame.dataset.run);
    if (resultFrame.hidden || forRun !== run || scrolledForRun === run) return;
    scrolledForRun = run;
    const box = resultFrame.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    resultFrame.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
  }

  resultImage.addEventListener("load", bringResultIntoView);

  async function poll(id, background, firstWait, myRun) {
    const started = Date.now();
    let wait = firstWait;
    let networkErrors = 0;
    for (;;) {
      await sleep(wait);
      if (myRun !== run) return;
      if (Date.now() - started > GIVE_UP_AFTER_MS) {
        fail("timeout", "");
        return;
      }
      let answer;
      try {
        answer = await getJob(id);
      } catch (err) {
        networkErrors += 1;
        if (networkErrors > MAX_NETWORK_RETRIES) {
          fail("network_error", "");
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
        const error = job.error || { code: "failed", message: "" };
        fail(error.code, error.message);
        return;
      }
      if (job.status === "canceled") {
        fail("canceled", "");
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
      showError("no_photo");
      photoInput.focus();
      return;
    }
    const background = selectedBackground();
    if (background === "image" && !backgroundFile) {
      showError("no_background_image");
      backgroundImageInput.focus();
      return;
    }
    run += 1;
    const myRun = run;
    const data = new FormData();
    data.append("image", selectedFile, selectedFile.name || "photo");
    data.append("background", background);
    if (background === "image") data.append("background_image", backgroundFile, backgroundFile.name || "background");
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
      if (myRun === run) fail("network_error", "");
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
      showError("result_unavailable");
    }
  });

  setStatus("idle", "Choose a photo to start.");
})();

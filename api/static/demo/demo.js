// Backdrop demo: upload a photo to POST /v1/jobs, poll GET /v1/jobs/<id>, show and offer the result.
// Two modes: a new background for the photo, or an ID photo of a document's spec (GET /v1/id-specs)
// shown with its guide lines, its compliance report as a checklist, and its print sheet.
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
  const modeRadios = form.querySelectorAll('input[name="mode"]');
  const backgroundOptions = $("background-options");
  const idOptions = $("id-options");
  const idSpecSelect = $("id-spec");
  const idSpecDetails = $("id-spec-details");
  const idBackgrounds = $("id-backgrounds");
  const idSheetSelect = $("id-sheet");
  const idMaxKbInput = $("id-max-kb");
  const idCutOut = $("id-cut-out");
  const idFrame = $("id-frame");
  const idPreview = $("id-preview");
  const idPhoto = $("id-photo");
  const idGuides = $("id-guides");
  const idShowGuides = $("id-show-guides");
  const idInfo = $("id-info");
  const idReport = $("id-report");
  const idVerdict = $("id-verdict");
  const idReportNote = $("id-report-note");
  const idChecklist = $("id-checklist");
  const idDownloadPhoto = $("id-download-photo");
  const idDownloadSheet = $("id-download-sheet");
  const idDownloadReport = $("id-download-report");
  const idSheetFrame = $("id-sheet-frame");
  const idSheetInfo = $("id-sheet-info");
  const idSheetImage = $("id-sheet-image");

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
    // ID photos
    no_face: [
      "No face found",
      "Backdrop could not find a face in this photo. Use a photo that shows your face from the front, in good light.",
    ],
    multiple_faces: ["More than one face", "An ID photo shows one person: use a photo of you alone."],
    face_cut_off: [
      "The face or the top of the head is cut off",
      "The edge of the photo cuts through the face or the hair. Use a photo with some space around the head.",
    ],
    matte_does_not_cover_face: [
      "The person does not cover the face",
      "The cut-out of the person misses the face found in the photo, so the top of the head cannot be measured. " +
        "Try another photo, or untick \u201calready cut out\u201d if it is ticked.",
    ],
    no_alpha_channel: [
      "This photo is not cut out",
      "It has no transparency to use. Untick \u201cMy photo is already cut out\u201d and Backdrop finds the " +
        "person itself.",
    ],
    resolution_too_low: [
      "This photo is too small for this document",
      "It would have to be enlarged too much to reach the document\u2019s size. Use a larger photo, or one " +
        "taken closer.",
    ],
    file_size_unreachable: [
      "The file size cannot be met",
      "Even the lowest allowed JPEG quality does not reach that size. Allow more KB, or leave the field empty.",
    ],
    sheet_does_not_fit: [
      "The photo does not fit on this paper",
      "Not one photo of this size fits on the paper chosen: choose a larger paper.",
    ],
    unknown_sheet: ["This paper is not offered", "Choose one of the papers in the list."],
    unknown_id_spec: [
      "This document is not known here",
      "The server does not offer this document. Reload the page to get its current list.",
    ],
    invalid_id_spec: ["These document rules do not work", "Check the size and the head rules, then try again."],
    invalid_max_kb: [
      "The file size is not a number",
      "Enter the largest file size in KB (for example 240), or leave it empty.",
    ],
    no_id_spec: ["No document chosen", "Choose the document the photo is for."],
    id_specs_unavailable: ["The list of documents could not be loaded", "Check your connection, then try again."],
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
    setStatus("idle", readyText());
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
    return getJson("v1/jobs/" + encodeURIComponent(id), true);
  }

  // withKey: an API call of this server; without it a result link (signed, perhaps on another origin).
  async function getJson(url, withKey) {
    const response = await fetch(url, {
      headers: Object.assign({ Accept: "application/json" }, withKey ? authHeaders() : {}),
      cache: "no-store",
      credentials: withKey ? "same-origin" : "omit",
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
    const frame = idMode() ? idFrame : resultFrame;
    const forRun = Number(frame.dataset.run);
    if (frame.hidden || forRun !== run || scrolledForRun === run) return;
    scrolledForRun = run;
    const box = frame.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    frame.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
  }

  resultImage.addEventListener("load", bringResultIntoView);

  async function poll(id, onSucceeded, firstWait, myRun) {
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
        await onSucceeded(job);
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

  // Sends the form's data and follows the job; onSucceeded(job) shows what it made.
  async function submitJob(data, onSucceeded) {
    run += 1;
    const myRun = run;
    submitButton.disabled = true;
    form.setAttribute("aria-busy", "true");
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
    await poll(job.id, (done) => onSucceeded(done, myRun), retryAfterSeconds(answer.retryAfter), myRun);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    if (!selectedFile) {
      showError("no_photo");
      photoInput.focus();
      return;
    }
    if (idMode()) {
      await submitIdPhoto();
      return;
    }
    const background = selectedBackground();
    if (background === "image" && !backgroundFile) {
      showError("no_background_image");
      backgroundImageInput.focus();
      return;
    }
    const data = new FormData();
    data.append("image", selectedFile, selectedFile.name || "photo");
    data.append("background", background);
    if (background === "image") data.append("background_image", backgroundFile, backgroundFile.name || "background");
    const format = background === "transparent" ? "png" : formatSelect.value;
    if (format) data.append("format", format);

    resultFrame.hidden = true;
    resultImage.removeAttribute("src");
    downloadLink.setAttribute("href", "#");
    await submitJob(data, (job) => showResult(job, background));
  });

  resultImage.addEventListener("error", () => {
    if (resultImage.getAttribute("src")) {
      showError("result_unavailable");
    }
  });

  // --- modes: a new background, or an ID photo -----------------------------------------------------

  const ID_PHOTO_HASH = "#id-photo";

  function idMode() {
    return $("mode-id-photo").checked;
  }

  function readyText() {
    return idMode()
      ? "Ready: choose the document and press \u201cMake the ID photo\u201d."
      : "Ready: choose a background and press \u201cReplace background\u201d.";
  }

  function syncMode() {
    const id = idMode();
    backgroundOptions.hidden = id;
    idOptions.hidden = !id;
    submitButton.textContent = id ? "Make the ID photo" : "Replace background";
    document.body.dataset.mode = id ? "id-photo" : "background";
    resultFrame.hidden = true; // a result of the other mode is not this one's
    hideIdResult();
    if (id) loadSpecs();
  }

  modeRadios.forEach((radio) =>
    radio.addEventListener("change", () => {
      run += 1; // a job of the other mode is no longer followed
      submitButton.disabled = false;
      form.removeAttribute("aria-busy");
      clearError();
      syncMode();
      setStatus("idle", selectedFile ? readyText() : "Choose a photo to start.");
      try {
        history.replaceState(null, "", idMode() ? ID_PHOTO_HASH : location.pathname + location.search);
      } catch (err) {
        // The address is only a convenience.
      }
    })
  );

  // --- ID photo: the documents -------------------------------------------------------------------

  const MM_PER_INCH = 25.4;
  const COLOURS = {
    white: "White",
    "off-white": "Off-white",
    cream: "Cream",
    "light-grey": "Light grey",
    "light-blue": "Light blue",
    blue: "Blue",
    red: "Red",
    green: "Green",
  };
  const PAPERS = { "4x6": "4 \u00d7 6 in", "3.5x5": "3.5 \u00d7 5 in", "5x7": "5 \u00d7 7 in", a4: "A4" };

  let specs = null; // the catalogue, once loaded
  let specsLoading = null;

  function colourLabel(name) {
    return COLOURS[name] || String(name).replace(/-/g, " ");
  }

  // Up to `digits` decimals, without trailing zeros: 0.8 -> "0.8", 71.11 -> "71.1".
  function num(value, digits) {
    return String(Number(value.toFixed(digits === undefined ? 1 : digits)));
  }

  function specHeightIn(spec, unit) {
    if (unit === "px") return spec.height_px;
    const heightMm = spec.height_mm || (spec.height_px / spec.dpi) * MM_PER_INCH;
    return unit === "in" ? heightMm / MM_PER_INCH : heightMm;
  }

  function toRatio(spec, value, unit) {
    return unit === "ratio" ? value : value / specHeightIn(spec, unit);
  }

  // The allowed range of a measure as ratios of the height: the intersection of the spec's rules.
  function specBounds(spec, measure) {
    const rules = spec[measure] || [];
    if (!rules.length) return null;
    const lows = rules.filter((r) => typeof r.min === "number").map((r) => toRatio(spec, r.min, r.unit));
    const highs = rules.filter((r) => typeof r.max === "number").map((r) => toRatio(spec, r.max, r.unit));
    return { min: lows.length ? Math.max(...lows) : null, max: highs.length ? Math.min(...highs) : null };
  }

  // The unit a document states a measure in (mm, in, px), when it states one besides a ratio.
  function ruleUnit(spec, measure) {
    const rule = (spec[measure] || []).find((r) => r.unit && r.unit !== "ratio");
    return rule ? rule.unit : null;
  }

  function specLabel(spec) {
    const names = [spec.name_en || spec.id];
    if (spec.name_zh) names.push(spec.name_zh);
    return names.join(" \u00b7 ") + " (" + spec.width_px + "\u00d7" + spec.height_px + " px)";
  }

  function currentSpec() {
    if (!specs) return null;
    return specs.find((spec) => spec.id === idSpecSelect.value) || null;
  }

  function specsFailed(code, message) {
    idSpecSelect.textContent = "";
    idSpecSelect.append(new Option("The documents could not be loaded", ""));
    idSpecSelect.disabled = true;
    idSpecDetails.textContent = "";
    if (idMode()) showError(code, "", message);
  }

  function loadSpecs() {
    if (specs) return Promise.resolve(specs);
    if (specsLoading) return specsLoading;
    specsLoading = (async () => {
      let answer = null;
      try {
        answer = await getJson("v1/id-specs", true);
      } catch (err) {
        answer = null;
      }
      specsLoading = null;
      if (!answer) {
        specsFailed("network_error", "");
        return null;
      }
      const list = answer.body && answer.body.specs;
      if (answer.status !== 200 || !Array.isArray(list)) {
        const unreadable = { code: "id_specs_unavailable", message: "" };
        const error = answer.status === 200 ? unreadable : parseError(answer.status, answer.body);
        specsFailed(error.code, error.message);
        return null;
      }
      specs = list.filter((spec) => spec && spec.id && spec.width_px > 0 && spec.height_px > 0);
      idSpecSelect.textContent = "";
      specs.forEach((spec) => idSpecSelect.append(new Option(specLabel(spec), spec.id)));
      idSpecSelect.disabled = specs.length === 0;
      syncSpec();
      return specs;
    })();
    return specsLoading;
  }

  function rangeText(bounds, format) {
    const low = typeof bounds.min === "number" ? bounds.min : null;
    const high = typeof bounds.max === "number" ? bounds.max : null;
    if (low !== null && high !== null) {
      if (Math.abs(low + high) < 1e-9 && high > 0) return "within \u00b1" + format(high);
      const from = format(low);
      const to = format(high);
      const unit = /[^\d.]*$/.exec(from)[0]; // "71.1 %" and "80 %" read "71.1\u201380 %"
      const shared = unit && to.endsWith(unit) && /^[^\d.]*/.exec(from)[0] === /^[^\d.]*/.exec(to)[0];
      return (shared ? from.slice(0, from.length - unit.length) : from) + "\u2013" + to;
    }
    if (low !== null) return "at least " + format(low);
    if (high !== null) return "at most " + format(high);
    return "any";
  }

  const percent = (ratio) => num(ratio * 100) + " %";

  function syncSpec() {
    const spec = currentSpec();
    if (!spec) {
      idSpecDetails.textContent = "";
      idBackgrounds.textContent = "";
      return;
    }
    const parts = [];
    if (spec.width_mm && spec.height_mm) {
      parts.push(num(spec.width_mm) + " \u00d7 " + num(spec.height_mm) + " mm at " + num(spec.dpi, 0) + " dpi");
    }
    parts.push(spec.width_px + " \u00d7 " + spec.height_px + " px");
    const head = specBounds(spec, "head_height");
    if (head) parts.push("head " + rangeText(head, percent) + " of the height");
    if (spec.file && spec.file.max_kb) {
      parts.push(String(spec.file.format || "").toUpperCase() + " up to " + num(spec.file.max_kb) + " KB");
    }
    idSpecDetails.textContent = "";
    if (spec.name_zh) {
      const chinese = document.createElement("span");
      chinese.lang = "zh";
      chinese.textContent = spec.name_zh;
      idSpecDetails.append(chinese, " \u00b7 ");
    }
    idSpecDetails.append(parts.join(" \u00b7 "));
    idMaxKbInput.placeholder = spec.file && spec.file.max_kb ? num(spec.file.max_kb) : "any";
    buildBackgrounds(spec);
  }

  function selectedIdBackground() {
    const checked = idBackgrounds.querySelector('input[name="id-background"]:checked');
    return checked ? checked.value : "";
  }

  function addBackgroundChip(value, text, colour) {
    const key = value || "auto";
    const input = document.createElement("input");
    input.type = "radio";
    input.className = "visually-hidden";
    input.name = "id-background";
    input.id = "id-bg-" + key;
    input.value = value;
    const label = document.createElement("label");
    label.htmlFor = input.id;
    label.className = "swatch";
    label.dataset.idBackground = key;
    label.dataset.testid = "id-background-" + key;
    const chip = document.createElement("span");
    const known = Object.prototype.hasOwnProperty.call(COLOURS, colour);
    chip.className = "chip " + (known ? "chip-" + colour : "chip-other");
    chip.setAttribute("aria-hidden", "true");
    label.append(chip, text);
    idBackgrounds.append(input, label);
    return input;
  }

  function buildBackgrounds(spec) {
    const previous = selectedIdBackground();
    const names = Array.isArray(spec.backgrounds) ? spec.backgrounds : [];
    idBackgrounds.textContent = "";
    const own = "The document\u2019s own" + (names.length ? " (" + colourLabel(names[0]).toLowerCase() + ")" : "");
    const inputs = [addBackgroundChip("", own, names[0])];
    names.forEach((name) => inputs.push(addBackgroundChip(name, colourLabel(name), name)));
    (inputs.find((input) => input.value === previous) || inputs[0]).checked = true;
  }

  idSpecSelect.addEventListener("change", syncSpec);
  apiKeyInput.addEventListener("change", () => {
    if (idMode() && !specs) {
      clearError();
      loadSpecs();
    }
  });

  // --- ID photo: submit, then the photo with its guide lines, the checklist and the downloads ------

  async function submitIdPhoto() {
    const catalogue = await loadSpecs();
    if (!catalogue) return; // its error is shown
    const spec = currentSpec();
    if (!spec) {
      showError("no_id_spec");
      idSpecSelect.focus();
      return;
    }
    const maxKbText = idMaxKbInput.value.trim();
    const maxKb = maxKbText ? Number(maxKbText) : null;
    if (idMaxKbInput.validity.badInput || (maxKb !== null && !(Number.isFinite(maxKb) && maxKb > 0))) {
      showError("invalid_max_kb");
      idMaxKbInput.focus();
      return;
    }
    const data = new FormData();
    data.append("image", selectedFile, selectedFile.name || "photo");
    data.append("id_spec", spec.id);
    const background = selectedIdBackground();
    if (background) data.append("background", background);
    const sheet = idSheetSelect.value;
    if (sheet) data.append("sheet", sheet);
    if (maxKb !== null) data.append("max_kb", String(maxKb));
    if (idCutOut.checked) data.append("matte_source", "alpha");
    hideIdResult();
    await submitJob(data, (job, myRun) => showIdResult(job, spec, sheet, myRun));
  }

  function hideIdResult() {
    idFrame.hidden = true;
    idReport.hidden = true;
    idPhoto.removeAttribute("src");
    idSheetImage.removeAttribute("src");
    idGuides.textContent = "";
    idChecklist.textContent = "";
    [idDownloadPhoto, idDownloadSheet, idDownloadReport].forEach((link) => link.setAttribute("href", "#"));
  }

  async function readReport(file) {
    if (!file || !file.url) return null;
    try {
      const answer = await getJson(file.url, false);
      return answer.status === 200 && answer.body && Array.isArray(answer.body.rules) ? answer.body : null;
    } catch (err) {
      return null; // another origin without CORS, an expired link: the checklist says so
    }
  }

  async function showIdResult(job, spec, sheetPaper, myRun) {
    const results = job.results || {};
    const photo = results["id_photo." + spec.id];
    const reportFile = results["report." + spec.id];
    const sheet = results["sheet." + spec.id];
    const summary = (job.id_photos || []).find((item) => item.spec_id === spec.id) || null;
    if (!photo || !photo.url) {
      fail("no_result", "");
      return;
    }
    setStatus("processing", "Reading the report\u2026");
    const report = await readReport(reportFile);
    if (myRun !== run) return;

    const width = photo.width || (summary && summary.width_px) || spec.width_px;
    const height = photo.height || (summary && summary.height_px) || spec.height_px;
    idPreview.style.aspectRatio = width + " / " + height;
    idGuides.setAttribute("viewBox", "0 0 " + width + " " + height);
    idPhoto.alt = report
      ? "The ID photo: the crown " + percent(report.crown_margin_ratio) + " of the height below the top edge, " +
        "the eye line " + percent(report.eye_line_ratio) + " and the chin " + percent(report.chin_margin_ratio) +
        " above the bottom edge"
      : "The ID photo";
    idPhoto.src = photo.url;
    drawGuides(report, spec, width, height);

    const details = [width + "\u00d7" + height + " px"];
    const dpi = (report && report.dpi) || (summary && summary.dpi);
    if (dpi) details.push(num(dpi, 0) + " dpi");
    if (photo.format) details.push(photo.format.toUpperCase());
    if (photo.bytes) details.push(formatBytes(photo.bytes));
    const quality = report ? report.jpeg_quality : summary && summary.jpeg_quality;
    if (quality) details.push("quality " + quality);
    idInfo.textContent = "(" + details.join(", ") + ")";

    renderChecklist(report, summary, spec);
    const base = "backdrop-" + job.id + "-" + spec.id;
    const extension = photo.format === "png" ? "png" : "jpg";
    idDownloadPhoto.href = photo.url;
    idDownloadPhoto.setAttribute("download", base + "." + extension);
    idDownloadReport.hidden = !(reportFile && reportFile.url);
    if (reportFile && reportFile.url) {
      idDownloadReport.href = reportFile.url;
      idDownloadReport.setAttribute("download", base + "-report.json");
    }
    const hasSheet = Boolean(sheet && sheet.url);
    idDownloadSheet.hidden = !hasSheet;
    idSheetFrame.hidden = !hasSheet;
    if (hasSheet) {
      idDownloadSheet.href = sheet.url;
      idDownloadSheet.setAttribute("download", base + "-sheet.jpg");
      idSheetImage.src = sheet.url;
      const count = summary && summary.sheet_count;
      const sheetDetails = [PAPERS[sheetPaper] || sheetPaper];
      if (count) sheetDetails.push(count === 1 ? "1 photo" : count + " photos");
      if (sheet.width && sheet.height) sheetDetails.push(sheet.width + "\u00d7" + sheet.height + " px");
      idSheetInfo.textContent = "Print sheet: " + sheetDetails.filter(Boolean).join(", ");
    }

    idFrame.hidden = false;
    idReport.hidden = false;
    images.hidden = false;
    idFrame.dataset.run = String(run);
    idFrame.dataset.job = job.id;
    setStatus("done", "Done", 1);
    submitButton.disabled = false;
    form.removeAttribute("aria-busy");
    if (idPhoto.complete && idPhoto.naturalWidth > 0) bringResultIntoView();
  }

  idPhoto.addEventListener("load", bringResultIntoView);
  idPhoto.addEventListener("error", () => {
    if (idPhoto.getAttribute("src")) showError("result_unavailable");
  });
  idShowGuides.addEventListener("change", () => idPreview.classList.toggle("guides-off", !idShowGuides.checked));

  // The guide lines: where the report measured the crown, the eye line and the chin, over the faint
  // bands where the rules allow them. y is a share of the height from the top.
  const SVG_NS = "http://www.w3.org/2000/svg";

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach((key) => element.setAttribute(key, String(attributes[key])));
    return element;
  }

  function clamp01(value) {
    return Math.max(0, Math.min(1, value));
  }

  function band(low, high) {
    const top = clamp01(Math.min(low, high));
    const bottom = clamp01(Math.max(low, high));
    return bottom > top ? [top, bottom] : null;
  }

  function intersect(a, b) {
    if (!a) return b;
    if (!b) return a;
    return band(Math.max(a[0], b[0]), Math.min(a[1], b[1])) || [a[0], a[0]];
  }

  function guideBands(report, spec) {
    const allowed = {};
    (report.rules || []).forEach((rule) => {
      const ratio = rule.allowed && !Array.isArray(rule.allowed) && /height/.test(rule.unit || "");
      if (ratio) allowed[rule.rule] = rule.allowed;
    });
    const bounds = (measure) => allowed[measure] || specBounds(spec, measure);
    const low = (b, fallback) => (b && typeof b.min === "number" ? b.min : fallback);
    const high = (b, fallback) => (b && typeof b.max === "number" ? b.max : fallback);
    const crownRule = bounds("crown_margin");
    const chinRule = bounds("chin_margin");
    const eyeRule = bounds("eye_line");
    const headRule = bounds("head_height");
    const crown = report.crown_margin_ratio;
    return {
      crown: crownRule ? band(low(crownRule, 0), high(crownRule, 1)) : null,
      eyes: eyeRule ? band(1 - high(eyeRule, 1), 1 - low(eyeRule, 0)) : null,
      chin: intersect(
        chinRule ? band(1 - high(chinRule, 1), 1 - low(chinRule, 0)) : null,
        headRule ? band(crown + low(headRule, 0), crown + high(headRule, 1)) : null
      ),
    };
  }

  function drawGuides(report, spec, width, height) {
    idGuides.textContent = "";
    if (!report) return;
    const lines = [
      ["crown", "Crown", report.crown_margin_ratio, "below"],
      ["eyes", "Eyes", 1 - report.eye_line_ratio, "above"],
      ["chin", "Chin", 1 - report.chin_margin_ratio, "below"],
    ].filter((line) => Number.isFinite(line[2]));
    const bands = guideBands(report, spec);
    const fontSize = Math.max(10, height * 0.034);
    Object.keys(bands).forEach((name) => {
      const range = bands[name];
      if (!range) return;
      idGuides.append(
        svgElement("rect", {
          class: "allowed allowed-" + name,
          "data-guide": name + "-allowed",
          "data-from": range[0].toFixed(4),
          "data-to": range[1].toFixed(4),
          x: 0,
          width: width,
          y: range[0] * height,
          height: Math.max((range[1] - range[0]) * height, 1),
        })
      );
    });
    lines.forEach(([name, text, ratio, side]) => {
      const y = ratio * height;
      idGuides.append(
        svgElement("line", {
          class: "guide guide-" + name,
          "data-guide": name,
          "data-ratio": ratio.toFixed(4),
          x1: 0,
          x2: width,
          y1: y,
          y2: y,
          "vector-effect": "non-scaling-stroke",
        })
      );
      const below = side === "below" ? y + fontSize * 1.1 <= height : y - fontSize * 1.1 < 0;
      const label = svgElement("text", {
        class: "guide-label guide-label-" + name,
        x: width - fontSize * 0.4,
        y: below ? y + fontSize * 1.05 : y - fontSize * 0.35,
        "text-anchor": "end",
        "font-size": fontSize.toFixed(1),
      });
      label.textContent = text;
      idGuides.append(label);
    });
  }

  // The checklist: each rule of the report, readable, with what was measured and what is allowed.
  const RULES = {
    head_height: "Head height (chin to crown)",
    crown_margin: "Space above the head",
    eye_line: "Eye height (from the bottom)",
    chin_margin: "Space below the chin",
    face_centred: "Face centred",
    eyes_level: "Eyes level",
    background_colour: "Background colour",
    background_uniform: "Plain background",
    resolution: "Enough detail (not enlarged too much)",
    file_size: "File size",
    file_format: "File format",
  };

  function ruleName(rule) {
    if (Object.prototype.hasOwnProperty.call(RULES, rule)) return RULES[rule];
    const words = String(rule).replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  // [measured, allowed] as text, by the rule's unit.
  function describeRule(rule, spec) {
    const measured = rule.measured;
    const allowed = rule.allowed || {};
    const unit = rule.unit || "";
    if (Array.isArray(allowed)) {
      const label = rule.rule === "file_format" ? (v) => String(v).toUpperCase() : colourLabel;
      const text = allowed.length === 1 ? label(allowed[0]) : "one of " + allowed.map(label).join(", ");
      return [label(measured), text];
    }
    if (typeof measured !== "number") return [String(measured), rangeText(allowed, String)];
    if (/height/.test(unit)) {
      const other = ruleUnit(spec, rule.rule);
      const digits = other === "px" ? 0 : other === "in" ? 2 : 1;
      const inUnit = (ratio) => num(ratio * specHeightIn(spec, other), digits) + " " + other;
      const measuredText = percent(measured) + " of the height" + (other ? " (" + inUnit(measured) + ")" : "");
      const allowedText = rangeText(allowed, percent) + (other ? " (" + rangeText(allowed, inUnit) + ")" : "");
      return [measuredText, allowedText];
    }
    if (/width/.test(unit)) {
      return [percent(Math.abs(measured)) + " of the width off centre", rangeText(allowed, percent)];
    }
    if (unit === "degrees") {
      const degrees = (v) => num(v, 2) + "\u00b0";
      return ["tilted " + degrees(Math.abs(measured)), rangeText(allowed, degrees)];
    }
    if (unit === "upscale factor") {
      const times = (v) => "\u00d7" + num(v, 2);
      return [measured > 1 ? "enlarged " + times(measured) : "not enlarged", rangeText(allowed, times)];
    }
    if (unit === "bytes") {
      const kb = (v) => num(v / 1000) + " KB";
      return [kb(measured), rangeText(allowed, kb)];
    }
    if (rule.rule === "background_uniform") return [percent(measured) + " plain", rangeText(allowed, percent)];
    const plain = (v) => num(v, 3) + (unit ? " " + unit : "");
    return [plain(measured), rangeText(allowed, plain)];
  }

  function checklistItem(rule, status, measuredText, allowedText, sources) {
    const item = document.createElement("li");
    item.className = "check-item";
    item.dataset.rule = rule;
    item.dataset.status = status;
    const badge = document.createElement("span");
    badge.className = "badge badge-" + status;
    badge.textContent = status === "pass" ? "\u2713 Pass" : "\u2717 Fail";
    const body = document.createElement("div");
    body.className = "check-body";
    const name = document.createElement("span");
    name.className = "check-name";
    name.textContent = ruleName(rule);
    body.append(name);
    if (measuredText) {
      const values = document.createElement("span");
      values.className = "check-values";
      values.textContent = measuredText + (allowedText ? "; allowed: " + allowedText : "");
      body.append(values);
    }
    if (sources && sources.length) {
      const more = document.createElement("details");
      more.className = "check-sources";
      const summary = document.createElement("summary");
      summary.textContent = sources.length === 1 ? "Source" : "Sources";
      const list = document.createElement("ul");
      sources.forEach((source) => {
        const line = document.createElement("li");
        line.textContent = source;
        list.append(line);
      });
      more.append(summary, list);
      body.append(more);
    }
    item.append(badge, body);
    return item;
  }

  function renderChecklist(report, summary, spec) {
    idChecklist.textContent = "";
    const name = spec.name_en || spec.id;
    if (!report) {
      idReportNote.hidden = false;
      idReportNote.textContent = "The full report could not be read here; download it below.";
      const failed = summary ? summary.failed_rules || [] : [];
      failed.forEach((rule) => idChecklist.append(checklistItem(rule, "fail", "", "", [])));
      const passed = summary ? summary.passed : null;
      idVerdict.dataset.passed = String(passed);
      idVerdict.textContent =
        passed === true ? "Meets the rules of " + name : passed === false ? "Does not meet the rules of " + name : name;
      return;
    }
    idReportNote.hidden = true;
    const rules = report.rules;
    rules.forEach((rule) => {
      const [measuredText, allowedText] = describeRule(rule, spec);
      const status = rule.status === "pass" ? "pass" : "fail";
      idChecklist.append(checklistItem(rule.rule, status, measuredText, allowedText, rule.sources));
    });
    const failures = rules.filter((rule) => rule.status !== "pass");
    idVerdict.dataset.passed = String(Boolean(report.passed));
    idVerdict.textContent = report.passed
      ? "Meets all " + rules.length + " checks of " + name
      : "Fails " + failures.length + " of " + rules.length + " checks of " + name + ": " +
        failures.map((rule) => ruleName(rule.rule).toLowerCase()).join(", ");
  }

  if (location.hash === ID_PHOTO_HASH) $("mode-id-photo").checked = true;
  syncMode();

  setStatus("idle", "Choose a photo to start.");
})();

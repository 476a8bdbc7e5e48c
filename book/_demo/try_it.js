/* The "Try it" page (book/try_it.md): the homework submission, run in this browser.
 *
 * Files (written into _static/demo/ by book/_ext/demo_site.py at build time):
 * manifest.json (run, precision, sizes, class names, normalisation, runtime), model.onnx
 * and ort/ (onnxruntime-web, from npm). Nothing is fetched from anywhere else, and the
 * reader's image or camera frames never leave the page.
 *
 * Pipeline, as the page describes it: grey (Pillow's "L" weights) -> square crop ->
 * area-averaged 48 x 48, rounded to whole grey levels -> (p - mean) / std -> a batch of
 * the input and its mirror -> logits averaged (fer_lib.evaluate.predict_views) -> softmax.
 *
 * For tests and the curious, #fer-demo carries what the last run saw and said: data-runs,
 * data-source, data-crop ("x,y,size" in source pixels), data-input (the 48 x 48 grey
 * pixels, base64), data-logits (both views), data-probabilities, data-top, data-ms.
 */
(function () {
  "use strict";

  const BASE = new URL(".", document.currentScript.src); // .../_static/demo/
  const SIDE = 48; // the model's input is SIDE x SIDE
  const VIEW_SIDE = 360; // the view canvas's longer side, in CSS pixels
  const MAX_SOURCE = 2048; // larger pictures are shrunk to this longer side first
  const HANDLE = 14; // the resize handle's size, in view pixels
  const KEEP_TIMES = 50;

  const state = {
    manifest: null, session: null, source: null, crop: null, stream: null,
    busy: false, pending: false, runs: 0, times: [], drag: null,
  };
  const root = document.getElementById("fer-demo");
  if (!root) return;
  const ui = {};

  // ------------------------------------------------------------------------ the page
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function buildUi() {
    root.textContent = "";
    ui.file = el("input", {type: "file", accept: "image/*", id: "fer-demo-file"});
    ui.camera = el("button", {type: "button", class: "fer-demo-button", text: "Turn on the camera"});
    ui.message = el("p", {class: "fer-demo-message", role: "status", "aria-live": "polite"});
    ui.view = el("canvas", {class: "fer-demo-view", width: VIEW_SIDE, height: VIEW_SIDE * 0.75,
      tabindex: "0", "aria-label": "Your picture. Drag the square over the face, drag its "
        + "corner to resize it; arrow keys move it, + and - resize it."});
    ui.size = el("input", {type: "range", min: SIDE, max: SIDE, value: SIDE, step: 1,
      "aria-label": "Size of the square crop, in pixels of the picture"});
    ui.input = el("canvas", {class: "fer-demo-input", width: SIDE, height: SIDE,
      "aria-label": "The 48 by 48 grey input the model sees"});
    ui.bars = el("div", {class: "fer-demo-bars"});
    ui.facts = el("dl", {class: "fer-demo-facts"});
    ui.video = el("video", {class: "fer-demo-video", muted: "", playsinline: ""});
    ui.video.muted = true;
    ui.work = document.createElement("canvas"); // the picture at full resolution
    ui.grey = document.createElement("canvas"); // its grey version, drawn into the view
    root.append(
      el("div", {class: "fer-demo-controls"},
        el("label", {for: "fer-demo-file", text: "Pick an image: "}), ui.file, ui.camera),
      ui.message,
      el("div", {class: "fer-demo-panels"},
        el("figure", {class: "fer-demo-panel"}, ui.view,
          el("label", {class: "fer-demo-size"}, "Crop size ", ui.size),
          el("figcaption", {text: "Your picture in grey. Drag the square over the face; drag "
            + "its corner, or the slider, to resize it."})),
        el("figure", {class: "fer-demo-panel"}, ui.input,
          el("figcaption", {text: "What the model sees: 48 × 48 pixels, grey."})),
        el("figure", {class: "fer-demo-panel fer-demo-chart"}, ui.bars,
          el("figcaption", {text: "Probability of each class (image and mirror averaged)."}))),
      ui.facts, ui.video);
    ui.file.addEventListener("change", () => {
      const file = ui.file.files && ui.file.files[0];
      ui.file.value = ""; // picking the same file again is a new choice
      if (file) readFile(file);
    });
    ui.camera.addEventListener("click", () => (state.stream ? stopCamera(true) : startCamera()));
    ui.size.addEventListener("input", () => resizeCrop(Number(ui.size.value)));
    bindCropControls();
    window.addEventListener("pagehide", () => stopCamera(false));
    drawBars(null);
    setEnabled(false);
  }

  function setEnabled(on) {
    ui.file.disabled = !on;
    ui.camera.disabled = !on;
    ui.size.disabled = !on;
  }

  function say(text, kind) {
    ui.message.replaceChildren(...[].concat(text)); // a string, or strings and nodes
    ui.message.dataset.kind = kind || "info";
  }

  // Opened from disk, the page cannot read its own model: browsers refuse fetch() on
  // file:// (Chromium says "Failed to fetch"). Say how to serve it instead.
  function sayServeIt() {
    const command = "python3 -m http.server --directory book/_build/html 8000";
    const address = "http://127.0.0.1:8000/try_it.html";
    say(["This page was opened from disk (file://), where browsers do not let it read "
      + "its model. Serve the book instead: in the repository run ",
    el("code", {text: "make serve"}), " or ", el("code", {text: command}),
    ", then open ", el("a", {href: address, text: address}), "."], "error");
  }

  function fmtInt(n) {
    return Math.round(n).toLocaleString("en-US");
  }

  function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  function showFacts(extra) {
    const m = state.manifest;
    const rows = [
      ["Model", `${m.run} (${m.family}), ${m.precision} weights`],
      ["Model file", `${fmtInt(m.bytes)} B as submitted (the .npz the book counts); this page `
        + `runs ${fmtInt(m.onnx_bytes)} B of ONNX holding the same ${m.precision} weights`],
      ["Runtime", m.runtime ? `onnxruntime-web ${m.runtime.version}, WebAssembly, one thread`
        : "not built (needs npm)"],
    ];
    if (state.times.length) {
      rows.push(["Time per inference", `${median(state.times).toFixed(1)} ms in this browser `
        + `(median of the last ${state.times.length} runs; one run is the image and its mirror)`]);
    }
    if (extra) rows.push(extra);
    ui.facts.textContent = "";
    for (const [term, text] of rows) ui.facts.append(el("dt", {text: term}), el("dd", {text}));
  }

  function drawBars(probabilities) {
    const names = state.manifest ? state.manifest.class_names : [];
    const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    ui.bars.textContent = "";
    names.forEach((name, k) => {
      const p = probabilities ? probabilities[k] : 0;
      const fill = el("span", {class: "fer-demo-fill"});
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      ui.bars.append(el("div", {class: k === top ? "fer-demo-bar fer-demo-top" : "fer-demo-bar"},
        el("span", {class: "fer-demo-name", text: name}),
        el("span", {class: "fer-demo-track"}, fill),
        el("span", {class: "fer-demo-value", text: probabilities ? `${(100 * p).toFixed(1)} %` : "–"})));
    });
  }

  // ------------------------------------------------------------- pictures and the crop
  /* Pillow's convert("L"): L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
  function toGrey(image) {
    const rgba = image.data;
    const grey = new Uint8Array(image.width * image.height);
    for (let i = 0, j = 0; i < grey.length; i += 1, j += 4) {
      grey[i] = (rgba[j] * 19595 + rgba[j + 1] * 38470 + rgba[j + 2] * 7471 + 0x8000) >> 16;
    }
    return grey;
  }

  /* Draw `drawable` (an image bitmap or the video) at width x height, return it in grey. */
  function greyPixels(drawable, width, height) {
    ui.work.width = width;
    ui.work.height = height;
    const ctx = ui.work.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(drawable, 0, 0, width, height);
    const grey = toGrey(ctx.getImageData(0, 0, width, height));
    ui.grey.width = width;
    ui.grey.height = height;
    const shown = new ImageData(width, height);
    for (let i = 0; i < grey.length; i += 1) {
      shown.data.set([grey[i], grey[i], grey[i], 255], 4 * i);
    }
    ui.grey.getContext("2d").putImageData(shown, 0, 0);
    return grey;
  }

  /* A new picture; a new crop (centred, `cropShare` of the shorter side) when asked for,
     or when the picture's shape changed. */
  function setSource(grey, width, height, label, cropShare, newCrop) {
    const sameShape = state.source && state.source.width === width && state.source.height === height;
    state.source = {grey, width, height, label};
    if (newCrop || !sameShape || !state.crop) {
      const side = Math.max(SIDE, Math.round(cropShare * Math.min(width, height)));
      state.crop = {x: Math.floor((width - side) / 2), y: Math.floor((height - side) / 2), size: side};
      ui.view.width = Math.round(width >= height ? VIEW_SIDE : VIEW_SIDE * width / height);
      ui.view.height = Math.round(width >= height ? VIEW_SIDE * height / width : VIEW_SIDE);
      ui.size.max = Math.min(width, height);
    }
    ui.size.value = state.crop.size;
    root.dataset.source = label;
    drawView();
    scheduleRun();
  }

  function clampCrop(x, y, size) {
    const {width, height} = state.source;
    size = Math.round(Math.min(Math.max(size, SIDE), width, height));
    x = Math.round(Math.min(Math.max(x, 0), width - size));
    y = Math.round(Math.min(Math.max(y, 0), height - size));
    state.crop = {x, y, size};
    ui.size.value = size;
    drawView();
    scheduleRun();
  }

  function resizeCrop(size) {
    if (!state.source) return;
    const c = state.crop;
    clampCrop(c.x + (c.size - size) / 2, c.y + (c.size - size) / 2, size);
  }

  function drawView() {
    const ctx = ui.view.getContext("2d");
    const {width, height} = ui.view;
    ctx.clearRect(0, 0, width, height);
    if (!state.source) return;
    const k = width / state.source.width;
    ctx.imageSmoothingEnabled = k < 1; // a small picture is enlarged pixel by pixel
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(ui.grey, 0, 0, width, height);
    const c = state.crop;
    const [x, y, s] = [c.x * k, c.y * k, c.size * k];
    ctx.fillStyle = "rgba(0, 0, 0, 0.5)";
    ctx.beginPath();
    ctx.rect(0, 0, width, height);
    ctx.rect(x, y, s, s);
    ctx.fill("evenodd");
    ctx.strokeStyle = "#ffb000";
    ctx.lineWidth = 2;
    ctx.strokeRect(x, y, s, s);
    ctx.fillStyle = "#ffb000";
    ctx.fillRect(x + s - HANDLE, y + s - HANDLE, HANDLE, HANDLE);
  }

  /* Pointer position in source pixels, and the view's scale (view pixels per source pixel). */
  function pointer(event) {
    const box = ui.view.getBoundingClientRect();
    const k = box.width / state.source.width;
    return {x: (event.clientX - box.left) / k, y: (event.clientY - box.top) / k, k};
  }

  function bindCropControls() {
    ui.view.addEventListener("pointerdown", (event) => {
      if (!state.source) return;
      const p = pointer(event);
      const c = state.crop;
      const handle = HANDLE / p.k;
      if (p.x >= c.x + c.size - handle && p.x <= c.x + c.size + handle / 2
          && p.y >= c.y + c.size - handle && p.y <= c.y + c.size + handle / 2) {
        state.drag = {mode: "resize"};
      } else {
        if (p.x < c.x || p.y < c.y || p.x > c.x + c.size || p.y > c.y + c.size) {
          clampCrop(p.x - c.size / 2, p.y - c.size / 2, c.size); // jump there, then drag
        }
        state.drag = {mode: "move", dx: p.x - state.crop.x, dy: p.y - state.crop.y};
      }
      ui.view.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    ui.view.addEventListener("pointermove", (event) => {
      if (!state.drag || !state.source) return;
      const p = pointer(event);
      const c = state.crop;
      if (state.drag.mode === "move") clampCrop(p.x - state.drag.dx, p.y - state.drag.dy, c.size);
      else clampCrop(c.x, c.y, Math.min(Math.max(p.x - c.x, p.y - c.y),
        state.source.width - c.x, state.source.height - c.y));
    });
    const end = () => { state.drag = null; };
    ui.view.addEventListener("pointerup", end);
    ui.view.addEventListener("pointercancel", end);
    ui.view.addEventListener("keydown", (event) => {
      if (!state.source) return;
      const c = state.crop;
      const step = Math.max(1, Math.round(c.size / 24));
      const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
      if (moves[event.key]) clampCrop(c.x + moves[event.key][0], c.y + moves[event.key][1], c.size);
      else if (event.key === "+" || event.key === "=") resizeCrop(c.size + 2 * step);
      else if (event.key === "-") resizeCrop(c.size - 2 * step);
      else return;
      event.preventDefault();
    });
  }

  /* Source interval [i * size / SIDE, (i + 1) * size / SIDE) of each output pixel i, as
     (source index, weight) pairs; the weights of one output pixel sum to 1. */
  function areaWeights(size) {
    const scale = size / SIDE;
    const rows = [];
    for (let i = 0; i < SIDE; i += 1) {
      const lo = i * scale;
      const hi = (i + 1) * scale;
      const row = [];
      for (let s = Math.floor(lo); s < Math.ceil(hi); s += 1) {
        const w = Math.min(hi, s + 1) - Math.max(lo, s);
        if (w > 0) row.push([s, w / scale]);
      }
      rows.push(row);
    }
    return rows;
  }

  /* The crop, area-averaged to SIDE x SIDE and rounded: uint8, row-major. */
  function modelPixels() {
    const {grey, width} = state.source;
    const {x, y, size} = state.crop;
    const weights = areaWeights(size);
    const across = new Float64Array(size * SIDE);
    for (let r = 0; r < size; r += 1) {
      const start = (y + r) * width + x;
      for (let j = 0; j < SIDE; j += 1) {
        let sum = 0;
        for (const [s, w] of weights[j]) sum += w * grey[start + s];
        across[r * SIDE + j] = sum;
      }
    }
    const pixels = new Uint8Array(SIDE * SIDE);
    for (let i = 0; i < SIDE; i += 1) {
      for (let j = 0; j < SIDE; j += 1) {
        let sum = 0;
        for (const [s, w] of weights[i]) sum += w * across[s * SIDE + j];
        pixels[i * SIDE + j] = Math.min(255, Math.max(0, Math.round(sum)));
      }
    }
    return pixels;
  }

  function drawInput(pixels) {
    const image = new ImageData(SIDE, SIDE);
    pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
    ui.input.getContext("2d").putImageData(image, 0, 0);
  }

  // -------------------------------------------------------------------- inputs
  async function readFile(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (error) {
      say(`“${file.name}” is not an image this browser can read, so nothing changed. `
        + "Pick a JPEG, PNG, WebP or GIF file.", "error");
      return;
    }
    const {width, height} = bitmap;
    if (width < SIDE || height < SIDE) {
      bitmap.close();
      say(`“${file.name}” is only ${width} × ${height} pixels: the model needs at least `
        + `${SIDE} × ${SIDE} pixels of face, so nothing changed. Pick a larger image.`, "error");
      return;
    }
    stopCamera(false);
    // Shrink very large photos first (never below SIDE pixels on the shorter side).
    const k = Math.min(1, Math.max(MAX_SOURCE / Math.max(width, height), SIDE / Math.min(width, height)));
    const w = Math.round(width * k);
    const h = Math.round(height * k);
    const grey = greyPixels(bitmap, w, h);
    bitmap.close();
    setSource(grey, w, h, file.name, 1, true);
    say(`“${file.name}”, ${width} × ${height} pixels${k < 1 ? ` (shrunk to ${w} × ${h})` : ""}. `
      + "Place the square over the face, eyebrows to chin.", "info");
  }

  function cameraError(error) {
    if (error.name === "NotAllowedError" || error.name === "SecurityError") {
      return "Camera access was denied, so the camera stays off. You can still pick an image "
        + "file; to use the camera, allow it in your browser's settings for this site and "
        + "press the button again.";
    }
    if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
      return "No camera was found. You can still pick an image file.";
    }
    return `The camera could not be started (${error.name}: ${error.message}). `
      + "You can still pick an image file.";
  }

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This browser offers no camera to this page (browsers allow the camera only on "
        + "https:// pages and on localhost). You can still pick an image file.", "error");
      return;
    }
    say("Asking your browser for the camera… (frames stay on this computer)", "info");
    ui.camera.disabled = true;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(
        {audio: false, video: {facingMode: "user", width: {ideal: 640}, height: {ideal: 480}}});
      ui.video.srcObject = stream;
      await ui.video.play();
      state.stream = stream;
      state.crop = null; // a fresh crop for the camera's frame
      ui.camera.textContent = "Turn off the camera";
      say("Camera on: the bars follow your face live. Place the square over it.", "info");
      requestAnimationFrame(frameLoop);
    } catch (error) {
      stopCamera(false);
      say(cameraError(error), "error");
    } finally {
      ui.camera.disabled = false;
    }
  }

  function stopCamera(tell) {
    if (!state.stream) return;
    state.stream.getTracks().forEach((track) => track.stop());
    state.stream = null;
    ui.video.srcObject = null;
    ui.camera.textContent = "Turn on the camera";
    if (tell) say("Camera off. The last frame stays; pick an image or turn the camera on again.", "info");
  }

  function frameLoop() {
    if (!state.stream) return;
    const {videoWidth: w, videoHeight: h} = ui.video;
    if (!state.busy && w >= SIDE && h >= SIDE) {
      setSource(greyPixels(ui.video, w, h), w, h, "camera", 0.6, false);
    }
    requestAnimationFrame(frameLoop);
  }

  // ----------------------------------------------------------------------- the model
  function scheduleRun() {
    state.pending = true;
    if (!state.busy) runLoop();
  }

  async function runLoop() {
    state.busy = true;
    try {
      while (state.pending && state.session && state.source) {
        state.pending = false;
        const crop = {...state.crop};
        const pixels = modelPixels();
        drawInput(pixels);
        try {
          report(crop, pixels, await infer(pixels));
        } catch (error) {
          say(`The model failed on this input (${error.message}).`, "error");
        }
      }
    } finally {
      state.busy = false;
    }
  }

  /* Logits of the 48 x 48 pixels and of their mirror image, in one batch of two. */
  async function infer(pixels) {
    const {pixel_mean: mean, pixel_std: std} = state.manifest;
    const n = SIDE * SIDE;
    const data = new Float32Array(2 * n);
    for (let i = 0; i < SIDE; i += 1) {
      for (let j = 0; j < SIDE; j += 1) {
        const v = (pixels[i * SIDE + j] - mean) / std;
        data[i * SIDE + j] = v;
        data[n + i * SIDE + (SIDE - 1 - j)] = v;
      }
    }
    const feeds = {[state.manifest.input.name]: new window.ort.Tensor("float32", data, [2, 1, SIDE, SIDE])};
    const start = performance.now();
    const output = await state.session.run(feeds);
    const ms = performance.now() - start;
    state.times = [...state.times, ms].slice(-KEEP_TIMES);
    const logits = Array.from(output[state.manifest.output].data);
    return {ms, plain: logits.slice(0, 7), mirror: logits.slice(7, 14)};
  }

  function softmax(logits) {
    const top = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - top));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  }

  function report(crop, pixels, result) {
    const mean = result.plain.map((v, k) => (v + result.mirror[k]) / 2);
    const probabilities = softmax(mean);
    const names = state.manifest.class_names;
    const top = probabilities.indexOf(Math.max(...probabilities));
    drawBars(probabilities);
    showFacts(["Reading", `${names[top]}, ${(100 * probabilities[top]).toFixed(1)} %`]);
    Object.assign(root.dataset, {
      crop: `${crop.x},${crop.y},${crop.size}`,
      input: btoa(String.fromCharCode(...pixels)),
      logits: JSON.stringify([result.plain, result.mirror]),
      probabilities: JSON.stringify(probabilities),
      top: names[top],
      ms: result.ms.toFixed(3),
    });
    state.runs += 1;
    root.dataset.runs = String(state.runs); // last: a test waits for it to change
  }

  function loadScript(url) {
    return new Promise((resolve, reject) => {
      const script = el("script", {src: url});
      script.onload = resolve;
      script.onerror = () => reject(new Error(`cannot load ${url}`));
      document.head.append(script);
    });
  }

  async function fetchOk(url) {
    const answer = await fetch(url);
    if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
    return answer;
  }

  async function loadModel() {
    const m = state.manifest;
    const runtime = new URL(m.runtime.path, BASE);
    await loadScript(new URL(m.runtime.script, runtime).href);
    const ort = window.ort;
    ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page: static hosts are not
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = runtime.href;
    ort.env.logLevel = "error";
    const bytes = await (await fetchOk(new URL(m.model, BASE))).arrayBuffer();
    state.session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["wasm"], graphOptimizationLevel: "all", logSeverityLevel: 3});
    // Warm up (the first runs compile and tune the WebAssembly), then time a few runs on
    // a plain grey input (not shown), so the page reports a steady time at once.
    const grey = new Uint8Array(SIDE * SIDE).fill(128);
    for (let i = 0; i < 5; i += 1) await infer(grey);
    state.times = [];
    for (let i = 0; i < 20; i += 1) await infer(grey);
  }

  async function start() {
    buildUi();
    if (location.protocol === "file:") {
      root.dataset.state = "file";
      sayServeIt();
      return;
    }
    say("Loading the model…", "info");
    try {
      state.manifest = await (await fetchOk(new URL("manifest.json", BASE))).json();
    } catch (error) {
      root.dataset.state = "failed";
      say(`The demo's files are missing from this build of the book (${error.message}).`, "error");
      return;
    }
    drawBars(null);
    showFacts();
    if (!state.manifest.runtime) {
      root.dataset.state = "no-runtime";
      say("The demo needs npm to be built: this copy of the book was built without "
        + "onnxruntime-web. Build it with make book on a machine with npm (which runs npm ci), "
        + "then reload this page.", "error");
      return;
    }
    try {
      await loadModel();
    } catch (error) {
      root.dataset.state = "failed";
      say(`The model could not be loaded in this browser (${error.message}).`, "error");
      return;
    }
    showFacts();
    setEnabled(true);
    root.dataset.state = "ready";
    say("Ready. Pick an image with a face, or turn on the camera.", "info");
    if (state.source) scheduleRun();
  }

  start();
})();

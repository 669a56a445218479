// dlpipe playground: one card per served task, each calling the same HTTP API a client would.
// No build step, no libraries. The page lives at <root>playground/; a single-task service answers at <root>
// (GET <root>info), the gateway serves task T under <root>T/ and lists its tasks at GET <root>tasks.
"use strict";

const ROOT = location.pathname.replace(/playground\/[^/]*$/, "");
// Which widget a task gets: by the family the gateway reports, else by the task's name (as serving/cli.py).
const KINDS = {
  tabular: "tabular", image: "image", digits: "image", mnist: "image", fashion: "image",
  forecast: "forecast", text: "text", sentiment: "text", encoder: "text", decoder: "decoder", seq2seq: "seq2seq",
};
const WIDGETS = { image: imageWidget, tabular: tabularWidget, text: textWidget, decoder: decoderWidget,
  forecast: forecastWidget, seq2seq: seq2seqWidget, unknown: () => {} };

// --- HTTP --------------------------------------------------------------------------------------------------

class ApiError extends Error {}

/** fetch + JSON; any non-2xx answer becomes an ApiError whose message is what the server said, readably. */
async function api(url, body) {
  const init = body === undefined ? {} : body instanceof FormData ? { method: "POST", body } :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const token = document.getElementById("token").value;
  if (token) init.headers = { ...init.headers, Authorization: `Bearer ${token}` };
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(`the server did not answer (${err.message})`);
  }
  const text = await response.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  if (!response.ok) throw new ApiError(`HTTP ${response.status}: ${readable(data)}`);
  return data;
}

/** The error bodies the services send: {"error": "..."}, pydantic's {"detail": [{loc, msg}, ...]}, a list of
 * those, or text. */
function readable(data) {
  if (Array.isArray(data)) return data.map(readable).join("; ");
  if (data && typeof data === "object") {
    if (Array.isArray(data.detail)) {
      return data.detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
    }
    const message = data.error ?? data.detail ?? data.message;
    if (message !== undefined) return typeof message === "string" ? message : JSON.stringify(message);
    return JSON.stringify(data);
  }
  return String(data).slice(0, 500) || "(empty answer)";
}

let docsPromise;
/** The OpenAPI document, fetched once: the source of the examples the forms start with. */
function docs() {
  docsPromise ??= api(ROOT + "docs.json").catch(() => ({}));
  return docsPromise;
}

/** Where a schema documents every one of `names` with examples, the first example of each; else {}. */
function examplesOf(doc, names) {
  const stack = [doc];
  while (stack.length) {
    const node = stack.pop();
    if (!node || typeof node !== "object") continue;
    const props = node.properties;
    if (props && names.every((n) => Array.isArray(props[n]?.examples))) {
      return Object.fromEntries(names.map((n) => [n, props[n].examples[0]]));
    }
    stack.push(...Object.values(node));
  }
  return {};
}

// --- discovery ---------------------------------------------------------------------------------------------

async function discover() {
  let tasks;
  try {
    tasks = await api(ROOT + "tasks");
  } catch (err) {
    if (!String(err.message).startsWith("HTTP 404")) throw err;
    const info = await api(ROOT + "info");
    return [{ task: info.task, info, base: ROOT }];
  }
  return Promise.all(tasks.map(async (t) => {
    const entry = typeof t === "string" ? { task: t } : t;
    const base = `${ROOT}${entry.task}/`;
    return { ...entry, base, info: entry.info ?? (await api(base + "info")) };
  }));
}

async function main() {
  const status = document.getElementById("status");
  let tasks;
  try {
    tasks = await discover();
  } catch (err) {
    status.textContent = `Could not list the served models: ${err.message}`;
    status.className = "error";
    return;
  }
  status.textContent = `Serving ${tasks.length} model${tasks.length === 1 ? "" : "s"}: ` +
    tasks.map((t) => t.task).join(", ");
  const list = document.getElementById("tasks");
  for (const task of tasks) list.append(card(task));
}

function card(task) {
  const kind = KINDS[task.family] ?? KINDS[task.task.split("_")[0]] ?? "unknown";
  const section = document.createElement("section");
  section.className = `card ${kind}`;
  section.dataset.task = task.task;
  const title = document.createElement("h2");
  title.textContent = task.task;
  const source = document.createElement("p");
  source.className = "source";
  source.textContent = task.info.source ? `model: ${task.info.source}` : "";
  section.append(title, source, document.getElementById(kind).content.cloneNode(true));
  const result = document.createElement("div");
  result.className = "result";
  result.setAttribute("aria-live", "polite");
  section.append(result);
  WIDGETS[kind](section, task, result);
  return section;
}

/** Run `call`, showing "…" meanwhile and the error readably when it fails. */
async function show(result, call) {
  result.className = "result busy";
  result.textContent = "…";
  try {
    await call();
    result.className = "result ok";
  } catch (err) {
    result.className = "result error";
    result.textContent = err instanceof ApiError ? err.message : `error: ${err.message}`;
  }
}

/** Probability bars, most probable first: rows of (label, probability). */
function bars(result, rows) {
  result.replaceChildren();
  for (const [label, p] of rows) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(name, track, value);
    result.append(row);
  }
}

const sorted = (probabilities) => Object.entries(probabilities).sort((a, b) => b[1] - a[1]);

// --- widgets -----------------------------------------------------------------------------------------------

function imageWidget(section, task, result) {
  const pre = task.info.preprocessing;
  const [height, width] = pre.resize;
  const draw = section.querySelector(".draw");
  const seen = section.querySelector(".seen");
  const pen = draw.getContext("2d");
  const clear = () => { pen.fillStyle = "black"; pen.fillRect(0, 0, draw.width, draw.height); };
  clear();
  pen.strokeStyle = "white";
  pen.lineWidth = 20;
  pen.lineCap = pen.lineJoin = "round";
  let drawing = false;
  const at = (e) => { const r = draw.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  draw.addEventListener("pointerdown", (e) => { drawing = true; pen.beginPath(); pen.moveTo(...at(e)); });
  draw.addEventListener("pointermove", (e) => { if (drawing) { pen.lineTo(...at(e)); pen.stroke(); } });
  draw.addEventListener("pointerup", () => { drawing = false; classifyDrawing(); });
  draw.addEventListener("pointerleave", () => { drawing = false; });
  section.querySelector(".clear").addEventListener("click", () => {
    clear();
    result.replaceChildren();
    result.className = "result";
  });
  section.querySelector(".classify-drawing").addEventListener("click", () => classifyDrawing());

  const topK = Math.min(3, task.info.classes.length);
  const answer = (top) => bars(result, top.map((c) => [c.label, c.probability]));

  function classifyDrawing() {
    const small = downscale(draw, width, height);
    preview(small);
    const gray = small.getContext("2d").getImageData(0, 0, width, height).data;
    const plane = Array.from({ length: height }, (_, y) => Array.from({ length: width }, (_, x) => gray[4 * (y * width + x)]));
    const pixels = pre.channels === 1 ? plane : [plane, plane, plane];
    show(result, async () => answer((await api(task.base + "predict", { images: [{ pixels, top_k: topK }] }))[0]));
  }

  section.querySelector(".upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    createImageBitmap(file).then(preview, () => {});  // the server judges the file; the preview is a courtesy
    const form = new FormData();
    form.append("file", file);
    form.append("top_k", String(topK));
    show(result, async () => answer(await api(task.base + "predict_image", form)));
  });

  function preview(image) {
    const ctx = seen.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "black";
    ctx.fillRect(0, 0, seen.width, seen.height);
    ctx.drawImage(image, 0, 0, seen.width, seen.height);
  }
}

/** The drawing as the model's input size: cropped to the ink, centred in a square with a margin (as MNIST
 * digits sit in their frame), smoothly downscaled, and its brightest ink stretched to 255. */
function downscale(canvas, width, height) {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let [x0, y0, x1, y1] = [canvas.width, canvas.height, -1, -1];
  for (let y = 0; y < canvas.height; y++) {
    for (let x = 0; x < canvas.width; x++) {
      if (data[4 * (y * canvas.width + x)] > 0) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) [x0, y0, x1, y1] = [0, 0, canvas.width - 1, canvas.height - 1];  // blank: send it as is
  const side = Math.max(x1 - x0, y1 - y0) * 1.4 + 1;
  const [cx, cy] = [(x0 + x1) / 2, (y0 + y1) / 2];
  const small = document.createElement("canvas");
  small.width = width;
  small.height = height;
  const ctx = small.getContext("2d");
  ctx.fillStyle = "black";
  ctx.fillRect(0, 0, width, height);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(canvas, cx - side / 2, cy - side / 2, side, side, 0, 0, width, height);
  const pixels = ctx.getImageData(0, 0, width, height);
  const ink = Math.max(1, ...pixels.data.filter((_, i) => i % 4 === 0));  // a stroke shrunk to 8x8 is faint
  pixels.data.forEach((v, i) => { if (i % 4 !== 3) pixels.data[i] = Math.round((255 * v) / ink); });
  ctx.putImageData(pixels, 0, 0);
  return small;
}

function tabularWidget(section, task, result) {
  const names = task.info.feature_names;
  const form = section.querySelector(".features");
  const inputs = names.map((name) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.name = name;
    label.append(name, input);
    form.append(label);
    return input;
  });
  docs().then((doc) => {
    const examples = { ...examplesOf(doc, names), ...examplesOf(task.info, names) };
    inputs.forEach((input) => { if (input.value === "" && examples[input.name] !== undefined) input.value = examples[input.name]; });
  });
  section.querySelector(".predict").addEventListener("click", () => {
    // An empty field is left out, so the server's own validation names it.
    const record = Object.fromEntries(inputs.filter((i) => i.value !== "").map((i) => [i.name, Number(i.value)]));
    show(result, async () => {
      const [answer] = await api(task.base + "predict", { records: [record] });
      if ("prediction" in answer) {
        result.innerHTML = `<p class="value">prediction: <b class="prediction"></b></p>`;
        result.querySelector(".prediction").textContent = answer.prediction.toPrecision(6);
      } else {
        bars(result, sorted(answer.probabilities));
      }
    });
  });
}

function textWidget(section, task, result) {
  const text = section.querySelector(".text");
  section.querySelector(".classify").addEventListener("click", () => show(result, async () => {
    const [answer] = await api(task.base + "classify", { texts: [text.value] });
    bars(result, sorted(answer.probabilities));
  }));
}

function decoderWidget(section, task, result) {
  const value = (cls) => section.querySelector(cls).value;
  const out = section.querySelector(".generated");
  section.querySelector(".generate").addEventListener("click", () => show(result, async () => {
    out.textContent = "";
    const answer = await api(task.base + "generate", {
      prompt: value(".prompt"), max_new_tokens: Number(value(".max-new-tokens")),
      temperature: Number(value(".temperature")), seed: Number(value(".seed")),
    });
    const prompt = document.createElement("span");
    prompt.className = "prompt-echo";
    prompt.textContent = value(".prompt");
    out.replaceChildren(prompt, answer.text);
    result.textContent = `${answer.tokens} characters generated`;
  }));
}

function seq2seqWidget(section, task, result) {
  const number = section.querySelector(".number");
  section.querySelector(".translate").addEventListener("click", () => show(result, async () => {
    const [answer] = await api(task.base + "translate", { texts: [number.value] });
    result.innerHTML = `<p class="value"><b class="translation"></b></p>`;
    result.querySelector(".translation").textContent = answer.text || "(nothing: the model ended at once)";
  }));
}

function forecastWidget(section, task, result) {
  const series = section.querySelector(".series");
  const chart = section.querySelector(".chart");
  series.placeholder = `at least ${task.info.min_history} values, oldest first`;
  docs().then((doc) => {
    const example = examplesOf(doc, ["history"]).history;
    if (series.value === "" && Array.isArray(example)) series.value = example.join(", ");
  });
  section.querySelector(".forecast").addEventListener("click", () => {
    const text = series.value.trim();
    // Anything that is not a number goes to the server as written, so its validation names the problem.
    const history = text === "" ? [] : text.split(/[\s,;]+/).map((v) => (Number.isFinite(Number(v)) ? Number(v) : v));
    show(result, async () => {
      const [answer] = await api(task.base + "forecast", { series: [{ history }] });
      plot(chart, history, answer.forecast);
      result.textContent = `next ${answer.horizon}: ${answer.forecast.map((v) => v.toPrecision(5)).join(", ")}`;
    });
  });
}

/** History (its last 4 horizons at most) and forecast as two polylines in an inline SVG. */
function plot(svg, history, forecast) {
  const past = history.slice(-Math.max(4 * forecast.length, 24));
  const all = [...past, ...forecast];
  const [lo, hi] = [Math.min(...all), Math.max(...all)];
  const [w, h, pad] = [640, 240, 30];
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(all.length - 1, 1);
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / (hi - lo || 1);
  const line = (values, from) => values.map((v, i) => `${x(from + i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const joined = [past[past.length - 1], ...forecast];
  svg.innerHTML = `
    <line class="axis" x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}"/>
    <text x="2" y="${pad}">${hi.toPrecision(4)}</text><text x="2" y="${h - pad}">${lo.toPrecision(4)}</text>
    <polyline class="history" points="${line(past, 0)}"/>
    <polyline class="predicted" points="${line(joined, past.length - 1)}"/>`;
}

main();

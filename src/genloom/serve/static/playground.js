// The playground: pick a model, send a request to this server's API, show the streamed tokens, stop, and draw a
// seq2seq model's attention. Plain JS, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let running = null; // the AbortController of the request in flight

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

async function loadModels() {
  try {
    const answer = await fetch("/v1/models", { headers: headers() });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error ? body.error.message : answer.statusText);
    models = body.data;
  } catch (error) {
    setStatus("Could not list the models: " + error.message, true);
    return;
  }
  $("model").replaceChildren(...models.map((m) => new Option(`${m.id} (${m.family})`, m.id)));
  modelChanged();
}

function current() {
  return models.find((m) => m.id === $("model").value);
}

function modelChanged() {
  const model = current();
  if (!model) return;
  $("task").replaceChildren(...model.capabilities.filter((c) => c !== "embeddings").map((c) => new Option(c, c)));
  const context = model.context_length ? `, context ${model.context_length} tokens` : "";
  $("model-info").textContent = `${model.family}${context}`;
  taskChanged();
}

function taskChanged() {
  const task = $("task").value;
  const seq2seq = task === "translate" || task === "summarize";
  $("prompt-label").textContent = task === "fill-mask" ? "Text with [MASK]" : seq2seq ? "Source text" : "Prompt";
  $("method").value = seq2seq ? "greedy" : "sample";
}

function numberOr(id, fallback) {
  const value = $(id).value.trim();
  return value === "" ? fallback : Number(value);
}

function decodingOptions() {
  const options = {
    model: $("model").value,
    method: $("method").value,
    max_tokens: numberOr("max-tokens", 60),
    min_tokens: numberOr("min-tokens", 0),
    top_p: numberOr("top-p", 1),
    top_k: numberOr("top-k", 0),
    num_beams: numberOr("num-beams", 4),
    repetition_penalty: numberOr("repetition-penalty", 1),
    no_repeat_ngram_size: numberOr("no-repeat", 0),
    stream: true,
  };
  if (options.method === "sample") options.temperature = numberOr("temperature", 1);
  const seed = numberOr("seed", null);
  if (seed !== null) options.seed = seed;
  if ($("stop").value) options.stop = [$("stop").value];
  const banned = $("ban-words").value.split(",").map((w) => w.trim()).filter(Boolean);
  if (banned.length) options.ban_words = banned;
  if ($("redact").value) options.redact = $("redact").value;
  if ($("safety").value) options.safety = $("safety").value;
  return options;
}

// Read a server-sent-event stream, calling onData with each parsed `data:` payload until [DONE].
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function generate() {
  const task = $("task").value;
  $("output").textContent = "";
  $("candidates").replaceChildren();
  $("attention").hidden = true;
  running = new AbortController();
  $("generate").disabled = true;
  $("stop-button").disabled = false;
  const started = performance.now();
  let pieces = 0;
  setStatus("Generating…");
  try {
    if (task === "fill-mask") {
      await fillMask(running.signal);
      setStatus("Done.");
      return;
    }
    const seq2seq = task === "translate" || task === "summarize";
    const body = decodingOptions();
    if (seq2seq) Object.assign(body, { input: $("prompt").value, attention: true });
    else body.prompt = $("prompt").value;
    const answer = await fetch(seq2seq ? `/v1/${task}` : "/v1/completions",
                               { method: "POST", headers: headers(), body: JSON.stringify(body), signal: running.signal });
    if (!answer.ok) {
      const problem = await answer.json();
      throw new Error(problem.error ? problem.error.message : answer.statusText);
    }
    await readEvents(answer, (data) => {
      if (data.error) throw new Error(data.error.message);
      const row = seq2seq ? data.outputs[0] : data.choices[0];
      if (row.text) {
        $("output").textContent += row.text;
        pieces += 1;
        const seconds = (performance.now() - started) / 1000;
        setStatus(`Generating… ${pieces} pieces, ${(pieces / seconds).toFixed(1)}/s`);
      }
      if (row.finish_reason) setStatus(`Done (${row.finish_reason}), ${pieces} pieces.`);
      if (row.attention && row.attention.length) drawAttention(row.source_tokens, row.target_tokens, row.attention);
    });
  } catch (error) {
    if (error.name === "AbortError") setStatus(`Stopped after ${pieces} pieces.`);
    else setStatus("Error: " + error.message, true);
  } finally {
    running = null;
    $("generate").disabled = false;
    $("stop-button").disabled = true;
  }
}

async function fillMask(signal) {
  const answer = await fetch("/v1/fill-mask", {
    method: "POST", headers: headers(), signal,
    body: JSON.stringify({ model: $("model").value, input: $("prompt").value, top_k: 5 }),
  });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error ? body.error.message : answer.statusText);
  const tables = body.masks.map((mask) => {
    const table = document.createElement("table");
    table.className = "candidates";
    table.createCaption().textContent = `[MASK] ${mask.index + 1}`;
    for (const c of mask.candidates) {
      const tr = table.insertRow();
      tr.insertCell().textContent = c.token;
      tr.insertCell().textContent = (100 * c.probability).toFixed(1) + "%";
    }
    return table;
  });
  $("candidates").replaceChildren(...tables);
}

// A heatmap of attention (target rows × source columns), labelled with the tokens.
function drawAttention(source, target, weights) {
  const canvas = $("heatmap");
  const cell = Math.max(8, Math.min(28, Math.floor(520 / Math.max(source.length, target.length, 1))));
  const left = 90, top = 80;
  canvas.width = left + cell * source.length + 10;
  canvas.height = top + cell * target.length + 10;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  weights.forEach((row, t) => row.slice(0, source.length).forEach((w, s) => {
    const shade = Math.round(255 * (1 - Math.min(1, w)));
    ctx.fillStyle = `rgb(${shade}, ${shade}, 255)`;
    ctx.fillRect(left + s * cell, top + t * cell, cell - 1, cell - 1);
  }));
  ctx.fillStyle = "#1d232b";
  ctx.font = "11px sans-serif";
  target.forEach((token, t) => ctx.fillText(token.slice(0, 12), 4, top + t * cell + cell * 0.7));
  source.forEach((token, s) => {
    ctx.save();
    ctx.translate(left + s * cell + cell * 0.7, top - 4);
    ctx.rotate(-Math.PI / 3);
    ctx.fillText(token.slice(0, 12), 0, 0);
    ctx.restore();
  });
  $("attention").hidden = false;
}

$("model").addEventListener("change", modelChanged);
$("task").addEventListener("change", taskChanged);
$("generate").addEventListener("click", generate);
$("stop-button").addEventListener("click", () => running && running.abort());
$("api-key").addEventListener("change", loadModels);
loadModels();

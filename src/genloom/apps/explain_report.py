"""What people look at: an explanation as one self-contained HTML page (the context and generated tokens; hover or
click a generated token to colour the context by its attributions; a switch between methods) and as a PNG of one
heatmap per method."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from genloom.apps.attention_plot import visible
from genloom.apps.explain import Explanation
from genloom.checkpoint import atomic_write
from genloom.plot import pyplot, save_png


def explanation_json(explanation: Explanation) -> dict:
    """The explanation as plain JSON values (NaN → null)."""
    def clean(row: np.ndarray) -> list[float | None]:
        return [None if math.isnan(x) else round(float(x), 6) for x in row]

    return {"context": explanation.context, "generated": explanation.generated, "first": explanation.first,
            "log_probs": [round(x, 6) for x in explanation.log_probs],
            "attributions": {m: [clean(row) for row in a] for m, a in explanation.attributions.items()},
            "completeness_error": [round(x, 6) for x in explanation.completeness_error],
            "settings": explanation.settings}


def write_html(explanation: Explanation, path: str | Path, title: str = "") -> Path:
    """Write the interactive page: no script or style from outside, the data inline."""
    data = json.dumps(explanation_json(explanation)).replace("</", "<\\/")
    page = PAGE.replace("__TITLE__", html.escape(title or "genloom explain")).replace("__DATA__", data)
    atomic_write(path, page)
    return Path(path)


def plot_explanation(explanation: Explanation, path: str | Path) -> Path:
    """One heatmap per method: rows are generated tokens, columns context tokens; red drove the token up, blue
    down; each row scaled by its largest magnitude."""
    plt = pyplot()
    methods = list(explanation.attributions)
    context = [visible(t) for t in explanation.context]
    generated = [visible(t) for t in explanation.generated]
    width = max(5.0, 0.4 * len(context) + 2.5)
    height = max(2.5, 0.35 * len(generated) + 1.4)
    fig, axes = plt.subplots(len(methods), 1, figsize=(width, height * len(methods)), dpi=100, squeeze=False)
    for ax, method in zip(axes[:, 0], methods):
        rows = explanation.attributions[method]
        scale = np.nanmax(np.abs(rows), axis=1, keepdims=True)
        shown = np.ma.masked_invalid(rows / np.where(scale > 0, scale, 1.0))  # NaN: out of the token's reach
        colours = plt.get_cmap("RdBu_r").with_extremes(bad="#e4e4e4")
        ax.imshow(shown, cmap=colours, vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(context)), context, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(generated)), generated, fontsize=8)
        ax.set_title(method.replace("_", " "), fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; margin: 1.5rem; color: #1d232b; }
h1 { font-size: 1.2rem; }
.tokens { margin: 0.6rem 0 1.2rem; line-height: 2.2; }
.tok { padding: 0.15rem 0.3rem; margin: 0 1px; border-radius: 3px; border: 1px solid #d6dbe0;
       font-family: ui-monospace, monospace; white-space: pre; }
.gen { cursor: pointer; background: #f3f5f7; }
.gen.selected { outline: 2px solid #1d232b; }
.ctx.generated { border-style: dashed; }
.muted { color: #5c6670; font-size: 0.9rem; }
</style></head>
<body>
<h1>__TITLE__</h1>
<p class="muted">Hover or click a generated token: the context is coloured by how much each token drove it
(red: up, blue: down; each view scaled to its largest magnitude). Dashed tokens were generated earlier.</p>
<label>Method <select id="method"></select></label>
<p class="muted" id="settings"></p>
<h2 class="muted">Context</h2><div class="tokens" id="context"></div>
<h2 class="muted">Generated</h2><div class="tokens" id="generated"></div>
<p id="detail" class="muted"></p>
<script>
"use strict";
const DATA = __DATA__;
const methodSelect = document.getElementById("method");
let selected = 0;
for (const m of Object.keys(DATA.attributions)) methodSelect.add(new Option(m.replace(/_/g, " "), m));
const ctx = DATA.context.map((t, j) => {
  const span = document.createElement("span");
  span.className = "tok ctx" + (j >= DATA.first ? " generated" : "");
  span.textContent = t;
  span.dataset.index = j;
  document.getElementById("context").appendChild(span);
  return span;
});
const gen = DATA.generated.map((t, i) => {
  const span = document.createElement("span");
  span.className = "tok gen";
  span.textContent = t;
  span.dataset.index = i;
  span.title = "log P = " + DATA.log_probs[i].toFixed(3);
  span.addEventListener("mouseenter", () => show(i));
  span.addEventListener("click", () => show(i));
  document.getElementById("generated").appendChild(span);
  return span;
});
function colour(value, scale) {
  if (value === null) return "transparent";
  const a = scale > 0 ? Math.min(1, Math.abs(value) / scale) : 0;
  return value >= 0 ? `rgba(214, 39, 40, ${a})` : `rgba(31, 119, 180, ${a})`;
}
function show(i) {
  selected = i;
  const method = methodSelect.value;
  const row = DATA.attributions[method][i];
  const scale = Math.max(0, ...row.filter((v) => v !== null).map(Math.abs));
  ctx.forEach((span, j) => {
    span.style.background = colour(row[j], scale);
    span.dataset.score = row[j] === null ? "" : String(row[j]);
  });
  gen.forEach((span, k) => span.classList.toggle("selected", k === i));
  document.getElementById("detail").textContent =
    `"${DATA.generated[i]}": log P = ${DATA.log_probs[i].toFixed(3)}; ${method.replace(/_/g, " ")}`;
  document.getElementById("settings").textContent = DATA.settings[method] || "";
}
methodSelect.addEventListener("change", () => show(selected));
show(0);
</script>
</body></html>
"""

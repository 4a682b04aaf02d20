"""The side-by-side report of ``genloom reuse``: one self-contained HTML file (no script, style or font from
outside). On top, every suspect with its ranked sources, scores and verdicts; below, one section per (suspect,
source) pair with the two texts side by side in panes that scroll on their own (so long documents stay usable),
each shared passage highlighted in the same colour on both sides; clicking a passage scrolls the other side to
its partner."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from genloom.apps.reuse import Match, SuspectResult
from genloom.checkpoint import atomic_write


def colour(n: int) -> str:
    """The n-th passage's highlight: hues 137.5° apart (the golden angle), so neighbours never look alike."""
    return f"hsl({(n * 137.5) % 360:.1f}, 85%, 78%)"


def highlighted(text: str, spans: Sequence[tuple[int, int]], pair: int, side: str) -> str:
    """``text`` escaped, with span n wrapped in <mark class="passage" id="p{pair}-{n}-{side}" data-passage="n">."""
    order = sorted(range(len(spans)), key=lambda n: spans[n][0])
    out, at = [], 0
    for n in order:
        start, end = spans[n]
        if start < at:  # overlaps the previous mark (a source passage reused twice): show it once
            continue
        out.append(html.escape(text[at:start]))
        out.append(f'<mark class="passage" id="p{pair}-{n}-{side}" data-passage="{n}" '
                   f'style="background:{colour(n)}">{html.escape(text[start:end])}</mark>')
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out)


def _pair_section(result: SuspectResult, match: Match, pair: int) -> str:
    suspect_html = highlighted(result.suspect.text, [a for a, _, _ in match.passages], pair, "suspect")
    source_html = highlighted(match.source.text, [b for _, b, _ in match.passages], pair, "source")
    f = match.features
    scores = "".join(f"<td>{f[name]:.2f}</td>" for name in f)
    heads = "".join(f"<th>{html.escape(name.replace('_', ' '))}</th>" for name in f)
    return f"""
<section class="pair" id="pair{pair}" data-verdict="{html.escape(match.verdict)}"
         data-source="{html.escape(match.source.name)}">
  <h2><span class="verdict {html.escape(match.verdict)}">{html.escape(match.verdict.replace('_', ' '))}</span>
      {html.escape(result.suspect.name)} ← {html.escape(match.source.name)}
      <span class="score">score {match.score:.2f}</span></h2>
  <table class="features"><tr>{heads}<th>passages</th></tr><tr>{scores}<td>{len(match.passages)}</td></tr></table>
  <div class="sides">
    <div class="side"><h3>suspect: {html.escape(result.suspect.name)}</h3>
      <div class="text suspect" data-pair="{pair}">{suspect_html}</div></div>
    <div class="side"><h3>source: {html.escape(match.source.name)}</h3>
      <div class="text source" data-pair="{pair}">{source_html}</div></div>
  </div>
</section>"""


def report_html(results: Sequence[SuspectResult], title: str = "genloom reuse") -> str:
    rows, sections, pair = [], [], 0
    for result in results:
        if not result.matches:
            rows.append(f"<tr><td>{html.escape(result.suspect.name)}</td><td colspan=3 class=none>no reuse found"
                        f"</td></tr>")
        for match in result.matches:
            rows.append(f'<tr><td>{html.escape(result.suspect.name)}</td><td><a href="#pair{pair}">'
                        f'{html.escape(match.source.name)}</a></td><td>{html.escape(match.verdict.replace("_", " "))}'
                        f'</td><td>{match.score:.2f}</td></tr>')
            sections.append(_pair_section(result, match, pair))
            pair += 1
    return PAGE.format(title=html.escape(title), rows="\n".join(rows), sections="\n".join(sections),
                       pairs=pair, suspects=len(results))


def write_report(results: Sequence[SuspectResult], path: str | Path, title: str = "genloom reuse") -> Path:
    atomic_write(path, report_html(results, title))
    return Path(path)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border: 1px solid #ccc; padding: .2em .6em; text-align: left; }}
.sides {{ display: flex; gap: 1em; }}
.side {{ flex: 1; min-width: 0; }}
.text {{ white-space: pre-wrap; border: 1px solid #bbb; padding: .6em; max-height: 70vh; overflow: auto;
         font-family: Georgia, serif; }}
mark.passage {{ cursor: pointer; border-radius: 2px; }}
mark.passage.flash {{ outline: 2px solid #000; }}
.verdict {{ padding: .1em .5em; border-radius: 3px; background: #ddd; font-size: .8em; }}
.verdict.near_copy {{ background: #e74c3c; color: #fff; }}
.verdict.light_revision {{ background: #f39c12; }}
.verdict.heavy_revision {{ background: #f7dc6f; }}
.score {{ font-size: .8em; color: #555; }}
.none {{ color: #777; }}
section.pair {{ margin-top: 2em; border-top: 2px solid #888; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{suspects} suspect(s), {pairs} reused source(s). Click a highlighted passage to find its partner.</p>
<table class="summary"><tr><th>suspect</th><th>source</th><th>verdict</th><th>score</th></tr>
{rows}
</table>
{sections}
<script>
document.addEventListener("click", function (event) {{
  var mark = event.target.closest("mark.passage");
  if (!mark) return;
  var other = mark.id.endsWith("-suspect") ? mark.id.replace(/-suspect$/, "-source")
                                           : mark.id.replace(/-source$/, "-suspect");
  var partner = document.getElementById(other);
  if (!partner) return;
  partner.scrollIntoView({{block: "center"}});
  partner.classList.add("flash");
  setTimeout(function () {{ partner.classList.remove("flash"); }}, 1200);
}});
</script>
</body></html>
"""

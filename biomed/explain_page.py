"""One self-contained HTML page of explanations (`biomed explain --html FILE`).

Strings (text, DNA, protein, SMILES) are shown with each attributed span shaded: red for
evidence for the explained target, blue against, the strongest at full colour. Tabular records
get a bar per feature; images are shown with the heat map over them. No script and nothing
fetched: styles are inline and images are data URIs, and a Content-Security-Policy forbids
anything else, so the page opens offline and from a mail attachment alike.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

FOR = (214, 39, 40)  # evidence for the target
AGAINST = (31, 119, 180)  # evidence against
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
.input { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; padding: .6em; border: 1px solid #ddd; }
mark { color: inherit; border-radius: 2px; }
.bar { display: inline-block; height: .9em; vertical-align: middle; }
td { padding: .1em .6em; } .num { text-align: right; font-family: ui-monospace, monospace; }
.overlay { position: relative; display: inline-block; } .overlay img { width: 512px; max-width: 100%; image-rendering: pixelated; }
.overlay img + img { position: absolute; left: 0; top: 0; }
.meta { color: #666; font-size: 90%; }
"""


def _colour(score: float, top: float) -> str:
    rgb = FOR if score >= 0 else AGAINST
    alpha = 0.0 if top <= 0 else min(abs(score) / top, 1.0)
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.3f})"


def shaded(text: str, attributions: list[dict]) -> str:
    """`text` as HTML with every attributed span in a <mark> shaded by its score."""
    spans = sorted((a for a in attributions if a.get("span")), key=lambda a: a["span"][0])
    top = max((abs(a["score"]) for a in spans), default=0.0)
    out, at = [], 0
    for a in spans:
        start, end = a["span"]
        if start < at:  # overlapping spans are not drawn twice
            continue
        out.append(html.escape(text[at:start]))
        out.append(f'<mark style="background: {_colour(a["score"], top)}" title="{a["score"]:+.4f}">{html.escape(text[start:end])}</mark>')
        at = end
    out.append(html.escape(text[at:]))
    return f'<div class="input">{"".join(out)}</div>'


def bars(attributions: list[dict]) -> str:
    """A table of features with a bar per attribution, largest first."""
    rows = sorted(attributions, key=lambda a: -abs(a["score"]))
    top = max((abs(a["score"]) for a in rows), default=0.0)
    lines = []
    for a in rows:
        width = 0 if top <= 0 else round(200 * abs(a["score"]) / top)
        rgb = FOR if a["score"] >= 0 else AGAINST
        bar = f'<span class="bar" style="width: {width}px; background: rgb{rgb}"></span>'
        lines.append(f'<tr><td>{html.escape(str(a["feature"]))}</td><td>{html.escape(str(a["value"]))}</td><td class="num">{a["score"]:+.4f}</td><td>{bar}</td></tr>')
    return "<table><tr><th>feature</th><th>value</th><th>score</th><th></th></tr>" + "".join(lines) + "</table>"


def _png(pixels: np.ndarray, mode: str | None = None) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay(image: np.ndarray, heatmap_png: str) -> str:
    """The image (as decoded, [0, 1]) with the heat map over it in red, opacity by attribution."""
    from PIL import Image

    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(heatmap_png))), dtype=np.float32) / 255.0
    shown = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    rgba = np.zeros((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = FOR
    rgba[..., 3] = (heat * 200).round().astype(np.uint8)
    return f'<div class="overlay"><img alt="input" src="{_png(shown)}"><img alt="attribution heat map" src="{_png(rgba, "RGBA")}"></div>'


def _prediction(p: dict) -> str:
    if "label" in p:
        sure = f" (set {p['prediction_set']} at alpha {p['alpha']})" if "prediction_set" in p else ""
        return f"{p['label']} (p = {p['probabilities'][p['label']]:.3f}){sure}"
    if "value" in p:
        return f"{p['value']:.4g}" + (f" (interval {p['interval'][0]:.4g} to {p['interval'][1]:.4g})" if "interval" in p else "")
    return f"risk score {p['risk_score']:.4g}"


def section(row: dict, image: np.ndarray | None) -> str:
    """One input's explanation: its prediction, what is explained, and the shaded input."""
    head = f"<h2>{html.escape(str(row['input'])[:120])}</h2>"
    gap = f", completeness gap {row['convergence_delta']:.2e}" if row.get("convergence_delta") is not None else ""
    meta = (
        f'<p>Prediction: <b>{html.escape(_prediction(row["prediction"]))}</b>. Explained: <b>{html.escape(str(row["target"]))}</b>. '
        f'<span class="meta">{html.escape(row["method"].replace("_", " "))}{gap}.</span></p>'
    )
    attributions = row["attributions"]
    if "heatmap_png" in row and image is not None:
        body = overlay(image, row["heatmap_png"])
    elif attributions and "feature" in attributions[0]:
        body = bars(attributions)
    else:
        body = shaded(str(row["input"]), attributions)
    return head + meta + body


def render(*, model: str, explanations: list[dict], images: list | None = None) -> str:
    """The page's HTML: one section per explanation, `images` the decoded inputs of an image model."""
    sections = "".join(section(row, None if images is None else images[i]) for i, row in enumerate(explanations))
    legend = f'<p class="meta"><mark style="background: rgb{FOR}; color: #fff">red</mark>: for the explained target; <mark style="background: rgb{AGAINST}; color: #fff">blue</mark>: against. Attributions by Captum.</p>'
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{csp}">'
        f"<title>Explanations: {html.escape(model)}</title><style>{STYLE}</style></head>"
        f"<body><h1>Why {html.escape(model)} predicts what it does</h1>{legend}{sections}</body></html>"
    )


def write_page(path: str | Path, *, model: str, explanations: list[dict], images: list | None = None) -> None:
    """Write the page whole (a temporary file renamed), so no half-written page is left."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(render(model=model, explanations=explanations, images=images), encoding="utf-8")
    temporary.replace(path)

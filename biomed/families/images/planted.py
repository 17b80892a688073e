"""Synthetic images with a planted, known signal: a small bright blob ("lesion") in one class.

The background is a smooth random field with its own brightness per image, crossed by a bright
line ("vessel") in both classes, so neither the mean intensity nor any fixed pixel gives the
label away: a model has to find a round bright spot anywhere in the image, which a CNN can and
a linear model on pixels largely cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

FORMATS = ("png8", "png16", "jpeg")


def _background(rng, side: int) -> np.ndarray:
    coarse = rng.normal(size=(side // 8, side // 8))
    field = np.kron(coarse, np.ones((8, 8)))[:side, :side]
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    return 0.2 + 0.35 * field * rng.uniform(0.5, 1.0) + rng.uniform(0.0, 0.15) + rng.normal(0.0, 0.03, size=(side, side))


def _vessel(rng, yy, xx, side: int) -> np.ndarray:
    """A bright line across the image (both classes), of about a lesion's total brightness."""
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(side * 0.3, side * 0.7, size=2)
    distance = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
    return 0.3 * np.exp(-(distance**2) / 2.0)


def planted_lesion_images(folder: str | Path, num_rows: int, *, seed: int, side: int = 64) -> pa.Table:
    """Write `num_rows` grayscale images under `folder` (8- and 16-bit PNG, JPEG, in turn) and
    return the table {"image": path relative to `folder`, "label": "lesion" | "clear",
    "lesion_radius": the blob's radius in pixels, 0 without one (a regression target),
    "lesion_y", "lesion_x": its centre in pixels, -1 without one (where explanations should look)}."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    paths, labels, sizes, centres = [], [], [], []
    for i in range(num_rows):
        image = _background(rng, side) + _vessel(rng, yy, xx, side)
        lesion = bool(rng.random() < 0.5)
        radius, cy, cx = 0.0, -1.0, -1.0
        if lesion:
            cy, cx = rng.uniform(side * 0.2, side * 0.8, size=2)
            radius = rng.uniform(2.5, 4.5)
            image = image + 0.45 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        image = image.clip(0.0, 1.0)
        kind = FORMATS[i % len(FORMATS)]
        name = f"img_{seed}_{i:04d}.{'jpg' if kind == 'jpeg' else 'png'}"
        if kind == "png16":
            Image.fromarray((image * 65535).astype(np.uint16)).save(folder / name)
        else:
            Image.fromarray((image * 255).astype(np.uint8)).save(folder / name, **({"quality": 95} if kind == "jpeg" else {}))
        paths.append(name)
        labels.append("lesion" if lesion else "clear")
        sizes.append(round(float(radius), 3))
        centres.append((round(float(cy), 3), round(float(cx), 3)))
    return pa.table({"image": paths, "label": labels, "lesion_radius": sizes, "lesion_y": [c[0] for c in centres], "lesion_x": [c[1] for c in centres]})


def lesion_mass(heatmap_png: str, row: dict, *, radii: float = 3.0) -> tuple[float, float]:
    """(share of a heat map's mass within `radii` lesion radii of the lesion's centre, that
    disk's share of the image): how much of an explanation lands on the planted lesion."""
    import base64
    import io

    from PIL import Image

    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(heatmap_png))), dtype=np.float64)
    yy, xx = np.mgrid[0 : heat.shape[0], 0 : heat.shape[1]]
    disk = (yy - row["lesion_y"]) ** 2 + (xx - row["lesion_x"]) ** 2 <= (radii * row["lesion_radius"]) ** 2
    return (float(heat[disk].sum() / heat.sum()) if heat.sum() > 0 else 0.0), float(disk.mean())

"""Regenerates the README's figures from the project's own offline split: .venv/bin/python docs/make_figures.py"""

from pathlib import Path

import numpy as np
from layeringdiff.examples import example, photo, synthetic_composite
from layeringdiff.stages.split import SplitOptions, split_layer
from layeringdiff.texture_metrics import textured_composite
from PIL import Image, ImageDraw

HERE = Path(__file__).parent
TILE = 300


def checker(h: int, w: int, cell: int = 12) -> np.ndarray:
    yy, xx = np.indices((h, w)) // cell
    return np.where((yy + xx) % 2 == 0, 0.85, 0.65).astype(np.float32)[..., None]


def on_checker(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4]
    return rgba[..., :3] * a + checker(*rgba.shape[:2]) * (1 - a)


def fit(img: np.ndarray) -> Image.Image:
    pil = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    pil.thumbnail((TILE * 2, TILE))
    return pil


def paste_rows(rows: list[list[Image.Image]], path: Path) -> None:
    w = sum(t.width for t in rows[0]) + 10 * (len(rows[0]) - 1)
    canvas = Image.new("RGB", (w, sum(max(t.height for t in row) for row in rows) + 10 * (len(rows) - 1)), "white")
    y = 0
    for row in rows:
        x = 0
        for tile in row:
            canvas.paste(tile, (x, y))
            x += tile.width + 10
        y += max(t.height for t in row) + 10
    canvas.save(path, optimize=True)
    print(path)


def fills() -> None:
    """The hidden background by each offline fill: input, smooth fill, texture fill."""
    rows = []
    image, box = example("coffee")
    cases = [(image, {"box": box})]
    comp, alpha, _, _ = textured_composite(photo("grass"), 300, seed=7)
    cases.append((comp, {"mask": (alpha > 0.5).astype(np.float32)}))
    for img, hint in cases:
        row = [fit(img)]
        for fill in ("smooth", "texture"):
            r = split_layer(img, options=SplitOptions(quantize=255, fill=fill), **hint)
            row.append(fit(r.background[..., :3]))
        rows.append(row)
    paste_rows(rows, HERE / "fill_comparison.png")


def main() -> None:
    fills()
    rows = []
    for name in ("coffee", "astronaut"):  # a box around the object (GrabCut), as drawn in yellow
        image, box = example(name)
        r = split_layer(image, box=box, options=SplitOptions(quantize=255))
        boxed = fit(image)
        s = boxed.width / image.shape[1]
        ImageDraw.Draw(boxed).rectangle([v * s for v in box], outline=(255, 220, 0), width=2)
        rows.append([boxed, fit(on_checker(r.foreground)), fit(np.dstack([r.alpha] * 3)), fit(r.background[..., :3])])
    # a hard selection of a furry, semi-transparent object composited over a photo
    comp, alpha, _, _ = synthetic_composite(300, 300, seed=0)
    r = split_layer(comp, mask=(alpha > 0.5).astype(np.float32), options=SplitOptions(quantize=255))
    rows.append([fit(comp), fit(on_checker(r.foreground)), fit(np.dstack([r.alpha] * 3)), fit(r.background[..., :3])])
    paste_rows(rows, HERE / "split_examples.png")


if __name__ == "__main__":
    main()

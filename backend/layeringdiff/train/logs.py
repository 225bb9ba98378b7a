"""Training logs: a CSV of losses per step and a PNG plot of the curves (Pillow only)."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PLOT_SIZE = (640, 360)
COLOURS = [(40, 110, 200), (220, 90, 40), (60, 160, 80), (150, 80, 180)]


class LossLog:
    def __init__(self, folder: str | Path, names: list[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names = names
        self.path = self.folder / "losses.csv"
        self.rows: list[list[float]] = []
        if self.path.exists():  # resumed run: keep the earlier curve
            with self.path.open() as fh:
                self.rows = [[float(v) for v in row] for row in list(csv.reader(fh))[1:]]
        else:
            self.path.write_text(",".join(["step", *names]) + "\n")

    def add(self, step: int, values: dict[str, float]) -> None:
        row = [float(step), *(float(values[n]) for n in self.names)]
        self.rows.append(row)
        with self.path.open("a") as fh:
            fh.write(",".join(f"{v:.6g}" for v in row) + "\n")

    def plot(self) -> Path:
        """losses.png: each curve scaled to the plot's height, log-free and dependency-free."""
        img = Image.new("RGB", PLOT_SIZE, "white")
        draw = ImageDraw.Draw(img)
        w, h = PLOT_SIZE
        margin = 30
        draw.rectangle([margin, 10, w - 10, h - margin], outline=(120, 120, 120))
        if len(self.rows) >= 2:
            data = np.array(self.rows)
            steps = data[:, 0]
            span = max(steps.max() - steps.min(), 1)
            for k, name in enumerate(self.names):
                ys = data[:, k + 1]
                lo, hi = float(ys.min()), float(ys.max())
                scale = (h - margin - 20) / max(hi - lo, 1e-12)
                pts = [(margin + (s - steps.min()) / span * (w - margin - 20), h - margin - (y - lo) * scale)
                       for s, y in zip(steps, ys, strict=True)]
                draw.line(pts, fill=COLOURS[k % len(COLOURS)], width=2)
                draw.text((margin + 8, 14 + 14 * k), f"{name}: {ys[0]:.4g} -> {ys[-1]:.4g}",
                          fill=COLOURS[k % len(COLOURS)])
        out = self.folder / "losses.png"
        img.save(out)
        return out

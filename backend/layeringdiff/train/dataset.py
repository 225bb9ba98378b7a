"""Training/test data: foreground RGBA x background pairs composited with C = a F + (1 - a) B.

Foregrounds come from a folder of RGBA images (MAGICK-like) or a procedural generator (soft shapes,
semi-transparent regions, hair-like strands, cut from photos shipped in scikit-image); backgrounds from a
folder (BG-20k-like) or the shipped photos. Backgrounds: bicubic resize of the shorter side to `size`,
centre crop. Foregrounds: random scale and position. Every sample is a pure function of (seed, index).
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..examples import photo, soft_alpha
from ..io.images import load_image

SHIPPED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


@dataclass
class DatasetConfig:
    size: int = 512
    seed: int = 0
    length: int = 1000
    scale_min: float = 0.4  # foreground's longer side relative to the canvas
    scale_max: float = 1.0
    foregrounds: str | None = None  # folder of RGBA images; None: procedural
    backgrounds: str | None = None  # folder of images; None: shipped photos


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize so the shorter side is `size`, then a centre crop to size x size."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))),
                         interpolation=cv2.INTER_CUBIC)
    y0 = (resized.shape[0] - size) // 2
    x0 = (resized.shape[1] - size) // 2
    return np.clip(resized[y0:y0 + size, x0:x0 + size], 0, 1)


def procedural_foreground(rng: np.random.Generator, size: int) -> np.ndarray:
    """An RGBA foreground: a shipped photo cut by a soft matte (body, strands, a glass-like patch)."""
    name = SHIPPED_PHOTOS[int(rng.integers(len(SHIPPED_PHOTOS)))]
    colour = resize_short_side(photo(name), size)
    alpha = soft_alpha(size, size, seed=int(rng.integers(1 << 30)), hair=int(rng.integers(0, 50)),
                       glass=bool(rng.integers(2)))
    return np.dstack([colour, alpha]).astype(np.float32)


def _files(folder: str) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


class LayerDataset:
    """Indexable synthetic dataset: sample i -> dict(composite, alpha, foreground, background), float32."""

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config
        self.fg_files = _files(config.foregrounds) if config.foregrounds else None
        self.bg_files = _files(config.backgrounds) if config.backgrounds else None

    def __len__(self) -> int:
        return self.config.length

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        if self.bg_files:
            image = load_image(self.bg_files[int(rng.integers(len(self.bg_files)))])[..., :3]
        else:
            image = photo(SHIPPED_PHOTOS[int(rng.integers(len(SHIPPED_PHOTOS)))])
            if rng.integers(2):
                image = image[:, ::-1]
        return resize_short_side(np.ascontiguousarray(image), self.config.size)

    def _foreground(self, rng: np.random.Generator) -> np.ndarray:
        size = self.config.size
        if self.fg_files:
            rgba = load_image(self.fg_files[int(rng.integers(len(self.fg_files)))])
            if rgba.shape[2] != 4:
                raise ValueError("foreground images must have an alpha channel")
        else:
            rgba = procedural_foreground(rng, size)
        scale = rng.uniform(self.config.scale_min, self.config.scale_max) * size / max(rgba.shape[:2])
        fh, fw = max(1, round(rgba.shape[0] * scale)), max(1, round(rgba.shape[1] * scale))
        rgba = np.clip(cv2.resize(rgba, (fw, fh), interpolation=cv2.INTER_CUBIC), 0, 1)
        canvas = np.zeros((size, size, 4), np.float32)
        y = int(rng.integers(-fh // 4, size - 3 * fh // 4 + 1))
        x = int(rng.integers(-fw // 4, size - 3 * fw // 4 + 1))
        ys, xs = slice(max(y, 0), min(y + fh, size)), slice(max(x, 0), min(x + fw, size))
        canvas[ys, xs] = rgba[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
        return canvas

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.config.seed, index])
        bg = self._background(rng)
        fg_rgba = self._foreground(rng)
        alpha = fg_rgba[..., 3]
        fg = fg_rgba[..., :3]
        composite = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg  # Eq. 1, exactly
        return {"composite": composite.astype(np.float32), "alpha": alpha, "foreground": fg,
                "background": bg.astype(np.float32)}


def write_shards(dataset: LayerDataset, out: str | Path, shard_size: int = 64) -> Path:
    """Samples as compressed .npz shards plus manifest.json (config, count, shard names)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(dataset), shard_size):
        items = [dataset[i] for i in range(start, min(start + shard_size, len(dataset)))]
        name = f"shard-{start // shard_size:05d}.npz"
        np.savez_compressed(out / name, **{k: np.stack([s[k] for s in items]) for k in items[0]})
        shards.append({"file": name, "count": len(items)})
    manifest = {"config": asdict(dataset.config), "count": len(dataset), "shards": shards,
                "fields": ["composite", "alpha", "foreground", "background"], "equation": "C = a F + (1 - a) B"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out / "manifest.json"


class ShardDataset:
    """Reads what write_shards wrote."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.index = [(s["file"], i) for s in self.manifest["shards"] for i in range(s["count"])]
        self._cache: tuple[str, dict] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        name, i = self.index[index]
        if self._cache is None or self._cache[0] != name:
            with np.load(self.folder / name) as data:
                self._cache = (name, {k: data[k] for k in data.files})
        return {k: v[i] for k, v in self._cache[1].items()}

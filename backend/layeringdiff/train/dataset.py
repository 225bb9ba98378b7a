"""Training/test data: foreground RGBA x background pairs composited with C = a F + (1 - a) B.

Foregrounds come from a folder of RGBA images (MAGICK-like) or a procedural generator (soft shapes,
semi-transparent regions, hair-like strands, cut from photos shipped in scikit-image); backgrounds from a
folder (BG-20k-like) or the shipped photos. Two recipes (`recipe`):
- "random" (the default): the background resized bicubic so its shorter side is `size`, centre crop; the
  foreground at a random scale (scale_min..scale_max of the canvas) and position over it;
- "paper" (Sec. 3.4): foreground and background composed at the foreground's own size (the background resized to
  cover it, centre crop), then the composite (its F, B and alpha alike) resized bicubic so its shorter side is
  `size`, and its centre cropped; 20,000 samples by default (PAPER_SAMPLES).
A foreground is always resized premultiplied (a F and a, then divided), so colours under alpha = 0 never bleed
into F's edges. Every sample is a pure function of (seed, index).

- The sources are split once into a training part and a held-out test part (`split`): the test set's
  foregrounds and backgrounds are never seen in training. Folders that are one part already (BG-20k's test folder,
  as the paper's Table 4 takes it) are taken whole with split "all". A sample never pairs a source with itself.
- F where alpha = 0 is defined: the foreground's colours extended outward (compose.extend_foreground), the
  same definition the whole-layer metrics of evaluate.py use.
- Samples are 8-bit (F, B, alpha, as a painting stores them) and C is composed from those exactly, so Eq. 1
  holds for what the trainer reads. On disk (write_dataset) each field is PNG-coded in a pack file with an index:
  any sample in any order for one read and three PNG decodes.
"""

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..errors import InputError
from ..examples import soft_alpha
from ..imaging.compose import extend_foreground
from ..io.images import load_image, to_u8
from .store import PackReader, PackWriter

# The photos that ship in scikit-image, split once: training sources and held-out test sources.
SHIPPED_PHOTOS = {
    "train": ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"),
    "test": ("retina", "stereo_motorcycle", "colorwheel", "brick", "grass", "gravel", "camera"),
}
SHIPPED_PHOTOS["all"] = SHIPPED_PHOTOS["train"] + SHIPPED_PHOTOS["test"]
# "all": every file of the folders, for sources that come split already (the paper's test sets: MAGICK's and
# BG-20k's own test folders)
SPLITS = ("train", "test", "all")
TEST_PERCENT = 10  # of the files of a foreground or background folder, held out for testing by a hash of the name
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
FIELDS = ("foreground", "background", "alpha")  # stored, 8-bit; the composite is made from them
MANIFEST = "manifest.json"
RECIPES = ("random", "paper")
PAPER_SAMPLES = 20_000  # the paper's recipe's default sample count


@dataclass
class DatasetConfig:
    size: int = 512
    seed: int = 0
    length: int = 1000
    scale_min: float = 0.4  # foreground's longer side relative to the canvas
    scale_max: float = 1.0
    foregrounds: str | None = None  # folder of RGBA images; None: procedural
    backgrounds: str | None = None  # folder of images; None: shipped photos
    split: str = "train"  # which part of the sources: "train", the held-out "test", or "all" (SPLITS)
    recipe: str = "random"  # RECIPES: how foreground and background are put together (module docstring)


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize so the shorter side is `size`, then a centre crop to size x size."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))),
                         interpolation=cv2.INTER_CUBIC)
    y0 = (resized.shape[0] - size) // 2
    x0 = (resized.shape[1] - size) // 2
    return np.clip(resized[y0:y0 + size, x0:x0 + size], 0, 1)


def resize_premultiplied(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of a straight-alpha RGBA float image through its premultiplied colours: a pixel's colour
    counts by its alpha, so colours under alpha = 0 do not bleed into the edges (0 where alpha stays 0)."""
    alpha = rgba[..., 3:4]
    premultiplied = np.concatenate([rgba[..., :3] * alpha, alpha], axis=-1).astype(np.float32)
    out = np.clip(cv2.resize(premultiplied, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)
    a = out[..., 3:4]
    colour = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([np.clip(colour, 0, 1), a], axis=-1).astype(np.float32)


def cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize so the image covers height x width, then its centre cropped to exactly that."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    resized = cv2.resize(image, (max(width, round(w * scale)), max(height, round(h * scale))),
                         interpolation=cv2.INTER_CUBIC)
    y0, x0 = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.clip(resized[y0:y0 + height, x0:x0 + width], 0, 1)


def shipped_photo(name: str) -> np.ndarray:
    """A photo that ships in scikit-image as HxWx3 float32 (grey ones as three equal channels)."""
    from skimage import data

    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo pairs: the left view
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3], dtype=np.float32) / 255.0


def held_out(name: str) -> bool:
    """Whether a source file belongs to the test part (by a hash of its name, stable across machines)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 100 < TEST_PERCENT


def split_files(folder: str, split: str) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    chosen = files if split == "all" else [p for p in files if held_out(p.stem) == (split == "test")]
    if not chosen:
        raise FileNotFoundError(f"none of the {len(files)} images in {folder} falls in the {split} split "
                                f"({TEST_PERCENT}% of the names are held out for testing)")
    return chosen


def to_float(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """8-bit F, B, alpha -> float32 in [0,1] plus C = a F + (1 - a) B (Eq. 1, exactly for these values)."""
    fg = sample["foreground"].astype(np.float32) / 255.0
    bg = sample["background"].astype(np.float32) / 255.0
    alpha = sample["alpha"].astype(np.float32) / 255.0
    a = alpha[..., None]
    return {"composite": a * fg + (1.0 - a) * bg, "alpha": alpha, "foreground": fg, "background": bg}


class LayerDataset:
    """Indexable synthetic dataset: sample i -> dict(composite, alpha, foreground, background), float32."""

    def __init__(self, config: DatasetConfig) -> None:
        if config.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {config.split!r}")
        if config.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {config.recipe!r}")
        self.config = config
        self.fg_files = split_files(config.foregrounds, config.split) if config.foregrounds else None
        self.bg_files = split_files(config.backgrounds, config.split) if config.backgrounds else None
        self.photos = SHIPPED_PHOTOS[config.split]

    def __len__(self) -> int:
        return self.config.length

    def _pick(self, rng: np.random.Generator, sources: list, avoid: str | None) -> Any:
        """A source other than `avoid` (the same photo is never foreground and background of one sample)."""
        choices = [s for s in sources if (s.stem if isinstance(s, Path) else s) != avoid]
        if not choices:
            raise ValueError("a sample needs two different sources: add another foreground or background")
        return choices[int(rng.integers(len(choices)))]

    def _background(self, rng: np.random.Generator, avoid: str | None) -> tuple[np.ndarray, str]:
        """A background other than the foreground's source, at its own size, and its name."""
        if self.bg_files:
            path = self._pick(rng, self.bg_files, avoid)
            image, name = load_image(path)[..., :3], path.stem
        else:
            name = self._pick(rng, list(self.photos), avoid)
            image = shipped_photo(name)
            if rng.integers(2):
                image = image[:, ::-1]
        return np.ascontiguousarray(image), name

    def _paper(self, rgba: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The paper's recipe: composed at the foreground's size, then the shorter side resized to `size` and the
        centre cropped (F premultiplied, B and alpha bicubic, all by the same resize and crop)."""
        h, w = rgba.shape[:2]
        size = self.config.size
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        y0, x0 = (nh - size) // 2, (nw - size) // 2
        crop = (slice(y0, y0 + size), slice(x0, x0 + size))
        bg = cover(background, h, w)
        bg = np.clip(cv2.resize(bg, (nw, nh), interpolation=cv2.INTER_CUBIC), 0, 1)[crop]
        return resize_premultiplied(rgba, nw, nh)[crop], bg

    def _foreground_source(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        size = self.config.size
        if self.fg_files:
            path = self.fg_files[int(rng.integers(len(self.fg_files)))]
            rgba = load_image(path)
            if rgba.shape[2] != 4:
                raise InputError(f"foreground images must have an alpha channel: {path} has none",
                                 "--foregrounds takes cut-out objects (RGBA PNGs, the object opaque, the rest clear)")
            return rgba, path.stem
        name = self.photos[int(rng.integers(len(self.photos)))]
        colour = resize_short_side(shipped_photo(name), size)
        alpha = soft_alpha(size, size, seed=int(rng.integers(1 << 30)), hair=int(rng.integers(0, 50)),
                           glass=bool(rng.integers(2)))
        return np.dstack([colour, alpha]).astype(np.float32), name

    def _place(self, rng: np.random.Generator, rgba: np.ndarray) -> np.ndarray:
        size = self.config.size
        scale = rng.uniform(self.config.scale_min, self.config.scale_max) * size / max(rgba.shape[:2])
        fh, fw = max(1, round(rgba.shape[0] * scale)), max(1, round(rgba.shape[1] * scale))
        rgba = resize_premultiplied(rgba, fw, fh)
        canvas = np.zeros((size, size, 4), np.float32)
        y = int(rng.integers(-fh // 4, size - 3 * fh // 4 + 1))
        x = int(rng.integers(-fw // 4, size - 3 * fw // 4 + 1))
        ys, xs = slice(max(y, 0), min(y + fh, size)), slice(max(x, 0), min(x + fw, size))
        canvas[ys, xs] = rgba[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
        return canvas

    def sample_u8(self, index: int) -> dict[str, np.ndarray]:
        """Sample `index` as stored: 8-bit foreground (extended where alpha = 0), background and alpha."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.config.seed, index])
        rgba, fg_name = self._foreground_source(rng)
        bg, _ = self._background(rng, avoid=fg_name)
        if self.config.recipe == "paper":
            canvas, bg = self._paper(rgba, bg)
        else:
            bg = resize_short_side(bg, self.config.size)
            canvas = self._place(rng, rgba)
        alpha = to_u8(canvas[..., 3])
        fg = extend_foreground(canvas[..., :3], alpha > 0)
        return {"foreground": to_u8(fg), "background": to_u8(bg), "alpha": alpha}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return to_float(self.sample_u8(index))


class StoredDataset:
    """Reads what write_dataset wrote: any sample, in any order, in one read and three PNG decodes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{folder} holds no dataset ({MANIFEST} missing): write one with "
                                    "`layeringdiff dataset`")
        self.manifest = json.loads(manifest.read_text())
        self.reader = PackReader(self.folder, FIELDS)
        if len(self.reader) < self.manifest["count"]:
            raise FileNotFoundError(f"{folder} holds {len(self.reader)} of {self.manifest['count']} samples: "
                                    "run the same `layeringdiff dataset` command again to finish it")

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def sample_u8(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.reader[index]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return to_float(self.sample_u8(index))


_WORKER_DATASETS: dict[str, LayerDataset] = {}


def _make(args: tuple[DatasetConfig, int]) -> tuple[int, dict[str, np.ndarray]]:
    config, index = args
    key = json.dumps(asdict(config))
    if key not in _WORKER_DATASETS:  # one per worker process, not one per sample
        _WORKER_DATASETS[key] = LayerDataset(config)
    return index, _WORKER_DATASETS[key].sample_u8(index)


def write_dataset(dataset: LayerDataset, out: str | Path, workers: int = 0,
                  progress: Callable[[int, int], None] | None = None, codec: str = "png") -> Path:
    """All samples into out/ (pack + index + manifest.json); samples already there are kept, so an interrupted
    run resumes. `workers` processes synthesise samples in parallel (0: this process). `codec` "png" (a third of
    the bytes) or "raw" (no decoding when read)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = PackReader(out, FIELDS) if any(out.glob("*.idx")) else None
    old = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else None
    if old is not None and old["config"] != asdict(dataset.config):
        raise ValueError(f"{out} holds a dataset of another configuration: write into an empty folder")
    manifest = {"config": asdict(dataset.config), "count": len(dataset), "fields": list(FIELDS), "dtype": "uint8",
                "layout": f"samples.pack ({codec}-coded fields) + samples.idx", "equation": "C = a F + (1 - a) B",
                "foreground_where_alpha_is_0": "the foreground's colours extended outward (extend_foreground)"}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    todo = [i for i in range(len(dataset)) if done is None or i not in done]
    with PackWriter(out, "samples", FIELDS, codec) as writer:
        if workers > 0:
            with ProcessPoolExecutor(workers) as pool:
                made = pool.map(_make, [(dataset.config, i) for i in todo], chunksize=4)
                for n, (i, sample) in enumerate(made):
                    writer.add(i, sample)
                    if progress:
                        progress(n + 1, len(todo))
        else:
            for n, i in enumerate(todo):
                writer.add(i, dataset.sample_u8(i))
                if progress:
                    progress(n + 1, len(todo))
    return out / MANIFEST

"""The texture fill of the hidden background (imaging/patchmatch/ through the classical method): deterministic for
a seed, the layers still recomposite exactly, and on textured photographs it looks like the texture by the
evaluation's own figures (texture_metrics.py), where the smooth fill and the smooth fill plus noise do not."""

import cv2
import numpy as np
import pytest
from layeringdiff.examples import photo
from layeringdiff.imaging.compose import compose, exact_layers
from layeringdiff.imaging.foreground import estimate_foreground
from layeringdiff.imaging.patchmatch import complete
from layeringdiff.stages.classical import HIDDEN_ALPHA, classical_method, complete_background, texture_fill
from layeringdiff.stages.split import SplitOptions, split_layer
from layeringdiff.texture_metrics import hidden_texture_metrics, matched_noise, textured_composite


def grey_photo(name: str) -> np.ndarray:
    return np.ascontiguousarray(photo(name))


def disk_hole(h: int, w: int, r: int) -> np.ndarray:
    hole = np.zeros((h, w), np.uint8)
    cv2.circle(hole, (w // 2, h // 2), r, 1, -1)
    return hole > 0


def test_complete_is_deterministic_for_a_seed_and_leaves_the_known_pixels():
    img = cv2.resize(grey_photo("gravel"), (160, 128), interpolation=cv2.INTER_AREA)
    hole = disk_hole(128, 160, 35)
    start = img.copy()
    start[hole] = img[~hole].mean(axis=0)
    a = complete(start, hole, seed=3)
    b = complete(start, hole, seed=3)
    assert np.array_equal(a, b)
    assert np.array_equal(start[hole], img[~hole].mean(axis=0)[None].repeat(hole.sum(), 0))  # input untouched
    assert np.array_equal(a[~hole], img[~hole])
    assert not np.array_equal(a, complete(start, hole, seed=4))  # the seed matters
    assert a.dtype == np.float32 and np.all((a >= 0) & (a <= 1))


def test_complete_copies_texture_from_outside_the_hole():
    """Every filled pixel comes from the exemplars: on a two-colour checker the fill stays two-coloured (no grey
    mush), and the fill is not flat."""
    yy, xx = np.mgrid[:120, :120]
    checker = (((yy // 6) + (xx // 6)) % 2).astype(np.float32)
    img = np.dstack([checker, 1 - checker, np.full_like(checker, 0.5)])
    hole = disk_hole(120, 120, 30)
    start = img.copy()
    start[hole] = 0.5
    out = complete(start, hole, seed=0)
    filled = out[hole]
    assert filled[:, 0].std() > 0.3  # a textured fill, where the start was flat
    assert np.mean((filled[:, 0] < 0.2) | (filled[:, 0] > 0.8)) > 0.8


def test_too_little_source_keeps_the_callers_fill():
    img = np.random.default_rng(0).uniform(0, 1, (40, 40, 3)).astype(np.float32)
    hole = np.ones((40, 40), bool)
    hole[:3] = False  # no whole 7x7 patch outside the hole
    assert np.array_equal(complete(img, hole), img)


@pytest.mark.parametrize("fill", ["texture", "smooth"])
def test_split_with_each_fill_recomposites_exactly(fill):
    comp, alpha, _, _ = textured_composite(grey_photo("grass"), 192, seed=5)
    comp = np.round(comp * 255) / 255
    r = split_layer(comp, mask=(alpha > 0.5).astype(np.float32), options=SplitOptions(quantize=255, fill=fill))
    a = r.foreground[..., 3]
    assert r.foreground.dtype == r.background.dtype == np.float32
    # the float layers, before any 8-bit export: a F + (1-a) B == C to float32 rounding at every pixel (a 1/255
    # tolerance would let layers rounded to 8 bits pass)
    assert np.abs(compose(a, r.foreground[..., :3], r.background[..., :3]) - comp).max() <= 1e-6
    assert r.info["fill"] == fill and r.info["recomposition_error"] <= 1e-6
    assert np.array_equal(r.background[..., :3][a <= 0], comp[a <= 0])  # copy-through where nothing is hidden


def test_split_texture_fill_is_deterministic():
    comp, alpha, _, _ = textured_composite(grey_photo("brick"), 160, seed=2)
    mask = (alpha > 0.5).astype(np.float32)
    a = split_layer(comp, mask=mask, options=SplitOptions(fill="texture")).background
    b = split_layer(comp, mask=mask, options=SplitOptions(fill="texture")).background
    assert np.array_equal(a, b)


def test_unknown_fill_is_an_input_error():
    from layeringdiff.errors import InputError

    with pytest.raises(InputError, match="fill must be one of"):
        SplitOptions.from_dict({"fill": "magic"})
    with pytest.raises(InputError, match="lama fill needs its model"):
        classical_method("lama")


@pytest.mark.parametrize("name,seed", [("grass", 11), ("gravel", 12), ("brick", 13)])
def test_texture_fill_looks_like_the_texture(name, seed):
    """On composites over textured photographs: high-frequency ratio in 0.7..1.3 (the smooth fill is far below), a
    better patch statistic than the smooth fill and than the smooth fill plus matched noise, and structure and
    colour (low-pass MAD) no worse than 1.1x the smooth fill's. Seeds apart from the evaluation's tuning set."""
    comp, alpha, _, bg = textured_composite(grey_photo(name), 256, seed=seed)
    fg_est, bg_est = estimate_foreground(comp, alpha)
    smooth = exact_layers(comp, alpha, fg_est, complete_background(comp, alpha, fg_est, bg_est))[1]
    texture = exact_layers(comp, alpha, fg_est, complete_background(comp, alpha, fg_est, bg_est,
                                                                    texture_fill(alpha)))[1]
    assert (alpha >= HIDDEN_ALPHA).sum() > 3000
    m_smooth = hidden_texture_metrics(smooth, bg, alpha)
    m_noise = hidden_texture_metrics(matched_noise(smooth, bg, alpha), bg, alpha)
    m_texture = hidden_texture_metrics(texture, bg, alpha)
    assert m_smooth["hf_ratio"] < 0.3 and 0.9 < m_noise["hf_ratio"] < 1.1  # what the figures mean
    assert 0.7 <= m_texture["hf_ratio"] <= 1.3
    assert m_texture["patch_SW"] < m_smooth["patch_SW"]
    assert m_texture["patch_SW"] < m_noise["patch_SW"]
    assert m_texture["lowpass_MAD"] <= 1.1 * m_smooth["lowpass_MAD"]


@pytest.mark.parametrize("name", ["gravel", "grass", "brick"])
def test_metrics_reward_the_right_texture_not_blur_or_noise(name):
    """The figures on known cases: the truth scores hf 1 and distances 0; another crop of the same texture (right
    texture, wrong phase) keeps hf about 1 and a small patch distance, far below a flat fill, a blur of it and the
    flat fill plus noise matched to the truth's detail."""
    img = grey_photo(name)
    truth, other = img[:200, :200], img[-200:, -200:]
    alpha = disk_hole(200, 200, 70).astype(np.float32)
    hidden = alpha > 0

    def filled(values):
        out = truth.copy()
        out[hidden] = values[hidden]
        return out

    flat = filled(np.broadcast_to(truth[hidden].mean(axis=0), truth.shape))
    m = {k: hidden_texture_metrics(v, truth, alpha) for k, v in {
        "truth": truth, "other": filled(other), "flat": flat, "blur": filled(cv2.GaussianBlur(other, (0, 0), 3)),
        "noise": matched_noise(flat, truth, alpha)}.items()}
    assert m["truth"]["hf_ratio"] == pytest.approx(1.0) and m["truth"]["patch_SW"] == 0.0
    assert m["truth"]["lowpass_MAD"] == 0.0
    assert 0.75 < m["other"]["hf_ratio"] < 1.3 and m["blur"]["hf_ratio"] < 0.4 and m["flat"]["hf_ratio"] < 0.05
    assert m["noise"]["hf_ratio"] == pytest.approx(1.0, abs=0.1)
    for worse in ("flat", "blur", "noise"):
        assert m["other"]["patch_SW"] < 0.6 * m[worse]["patch_SW"], worse

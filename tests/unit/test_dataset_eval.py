"""Dataset synthesis, its on-disk layout, and the evaluation protocol of Table 4 (no torch needed)."""

import json
import os

import numpy as np
import pytest
from layeringdiff.evaluate import (
    SCALES,
    classical,
    classical_smooth,
    classical_with,
    describe_scales,
    errors,
    evaluate,
    germer,
    germer_inpaint,
    layer_statistics,
    lpips_metric,
    parse_scales,
    trimap_like_xu,
    write_report,
)
from layeringdiff.imaging.compose import LEAST_CHANGE, extend_foreground
from layeringdiff.io.images import save_png
from layeringdiff.texture_metrics import hidden_texture_metrics
from layeringdiff.train.dataset import (
    SHIPPED_PHOTOS,
    DatasetConfig,
    LayerDataset,
    StoredDataset,
    held_out,
    resize_premultiplied,
    resize_short_side,
    write_dataset,
)


def test_samples_satisfy_the_composition_equation_and_are_seeded():
    ds = LayerDataset(DatasetConfig(size=64, length=6, seed=3))
    for i in range(len(ds)):
        s = ds[i]
        a = s["alpha"].astype(np.float64)[..., None]
        recomposed = a * s["foreground"] + (1 - a) * s["background"]
        assert np.abs(recomposed - s["composite"]).max() < 1e-6  # Eq. 1
        assert s["composite"].shape == (64, 64, 3) and s["alpha"].shape == (64, 64)
        assert 0 <= s["alpha"].min() and s["alpha"].max() <= 1
        for key in ("alpha", "foreground", "background"):  # 8-bit values, as stored
            assert np.abs(np.round(s[key] * 255) - s[key] * 255).max() < 1e-3
    again = LayerDataset(DatasetConfig(size=64, length=6, seed=3))
    assert all(np.array_equal(ds[i]["composite"], again[i]["composite"]) for i in range(6))
    assert not np.array_equal(ds[0]["alpha"], ds[1]["alpha"])
    other = LayerDataset(DatasetConfig(size=64, length=6, seed=4))
    assert not np.array_equal(ds[0]["composite"], other[0]["composite"])
    with pytest.raises(IndexError):
        ds[6]


def test_foreground_where_alpha_is_zero_is_its_colours_extended_outward():
    fg = np.zeros((40, 40, 3), np.float32)
    fg[:, :10] = [1.0, 0.0, 0.0]  # visible: a red strip on the left ...
    fg[:, 10:20] = [0.0, 0.0, 1.0]  # ... and a blue one beside it; the rest is arbitrary
    fg[:, 20:] = [0.3, 0.9, 0.2]
    visible = np.zeros((40, 40), bool)
    visible[:, :20] = True
    out = extend_foreground(fg, visible)
    assert np.array_equal(out[visible], fg[visible])  # visible colours kept
    assert np.abs(out[:, 21] - [0, 0, 1]).max() < 0.2  # next to blue: blue
    far = out[:, 39]  # far out: a blend of what is visible, the nearer blue most; never the hidden green
    assert np.all(far[:, 2] > far[:, 0]) and np.all(far[:, 0] > 0.02) and out[..., 1].max() < 0.05
    # the dataset stores F so: F where alpha = 0 is a function of F where alpha > 0 only
    s = LayerDataset(DatasetConfig(size=64, length=1, seed=0))[0]
    seen = s["alpha"] > 0
    assert np.abs(extend_foreground(s["foreground"], seen) - s["foreground"]).max() <= 1 / 255  # 8-bit rounding


def test_held_out_sources_never_appear_in_training_samples(tmp_path):
    assert not set(SHIPPED_PHOTOS["train"]) & set(SHIPPED_PHOTOS["test"])
    names = [f"img{i}" for i in range(60)]
    test_names = {n for n in names if held_out(n)}
    assert 0 < len(test_names) < 20
    for kind in ("fg", "bg"):
        (tmp_path / kind).mkdir()
    for i, name in enumerate(names):  # each file's colour says which file it is
        level = (i + 1) / 64
        save_png(tmp_path / "fg" / f"{name}.png", np.dstack([np.full((8, 8, 3), level), np.ones((8, 8))]))
        save_png(tmp_path / "bg" / f"{name}.png", np.full((8, 8, 3), level))
    by_level = {round((i + 1) / 64 * 255): n for i, n in enumerate(names)}
    for split in ("train", "test"):
        ds = LayerDataset(DatasetConfig(size=16, length=12, seed=1, split=split, scale_min=1.0,
                                        foregrounds=str(tmp_path / "fg"), backgrounds=str(tmp_path / "bg")))
        for i in range(len(ds)):
            s = ds.sample_u8(i)
            fg_name = by_level[int(s["foreground"][s["alpha"] == 255][0, 0])]
            bg_name = by_level[int(s["background"][0, 0, 0])]
            assert (fg_name in test_names) == (bg_name in test_names) == (split == "test")
            assert fg_name != bg_name


def test_split_all_takes_every_file_of_a_folder_that_is_a_test_set_already(tmp_path):
    """The paper's Table 4 draws from MAGICK's and BG-20k's own test folders: `--split all` takes each whole."""
    import argparse

    from layeringdiff.cli import add_data_args
    from layeringdiff.train.dataset import SPLITS

    names = [f"img{i}" for i in range(40)]
    for kind in ("fg", "bg"):
        (tmp_path / kind).mkdir()
    for i, name in enumerate(names):
        level = (i + 1) / 64
        save_png(tmp_path / "fg" / f"{name}.png", np.dstack([np.full((8, 8, 3), level), np.ones((8, 8))]))
        save_png(tmp_path / "bg" / f"{name}.png", np.full((8, 8, 3), level))
    ds = LayerDataset(DatasetConfig(size=16, length=4, split="all", foregrounds=str(tmp_path / "fg"),
                                    backgrounds=str(tmp_path / "bg")))
    assert [p.stem for p in ds.fg_files] == [p.stem for p in ds.bg_files] == sorted(names)
    assert set(LayerDataset(DatasetConfig(split="all")).photos) == set(SHIPPED_PHOTOS["train"] + SHIPPED_PHOTOS["test"])
    parser = argparse.ArgumentParser()
    add_data_args(parser, 10, split="test")
    assert parser.parse_args(["--split", "all"]).split == "all"
    assert next(a for a in parser._actions if a.dest == "split").choices == SPLITS


def test_a_sample_never_pairs_a_source_with_itself(tmp_path):
    (tmp_path / "fg").mkdir()
    (tmp_path / "bg").mkdir()  # "x" is in both folders: as foreground it is never its own background
    save_png(tmp_path / "fg" / "x.png", np.dstack([np.full((8, 8, 3), 1.0), np.ones((8, 8))]))
    save_png(tmp_path / "bg" / "x.png", np.zeros((8, 8, 3)))
    save_png(tmp_path / "bg" / "y.png", np.full((8, 8, 3), 0.5))
    ds = LayerDataset(DatasetConfig(size=16, length=10, seed=0, foregrounds=str(tmp_path / "fg"),
                                    backgrounds=str(tmp_path / "bg")))
    assert all(np.all(ds.sample_u8(i)["background"] == 128) for i in range(10))
    (tmp_path / "bg" / "y.png").unlink()
    with pytest.raises(ValueError, match="two different sources"):
        LayerDataset(ds.config).sample_u8(0)
    procedural = LayerDataset(DatasetConfig(size=32, length=20, seed=5))
    for i in range(20):  # the procedural foreground's photo is never the background's
        import numpy.random as npr

        rng = npr.default_rng([5, i])
        _, fg_name = procedural._foreground_source(rng)
        _, bg_name = procedural._background(rng, avoid=fg_name)
        assert fg_name != bg_name


def test_resize_short_side_then_centre_crop():
    img = np.zeros((40, 100, 3), np.float32)
    img[:, 45:55] = 1.0  # a bar in the middle survives the centre crop
    out = resize_short_side(img, 20)
    assert out.shape == (20, 20, 3) and out[:, 10].mean() > 0.9 and out[:, 0].max() < 0.05


def test_folders_of_foregrounds_and_backgrounds(tmp_path):
    (tmp_path / "fg").mkdir()
    (tmp_path / "bg").mkdir()
    rgba = np.zeros((30, 20, 4), np.float32)
    rgba[5:25, 5:15] = [1.0, 0.0, 0.0, 1.0]
    save_png(tmp_path / "fg" / "red.png", rgba)
    save_png(tmp_path / "bg" / "blue.png", np.dstack([np.zeros((50, 70)), np.zeros((50, 70)), np.ones((50, 70))]))
    ds = LayerDataset(DatasetConfig(size=32, length=3, foregrounds=str(tmp_path / "fg"),
                                    backgrounds=str(tmp_path / "bg")))
    s = ds[0]
    assert np.allclose(s["background"], [0, 0, 1], atol=1e-6)
    assert s["alpha"].max() == pytest.approx(1.0) and np.allclose(s["foreground"][s["alpha"] > 0.99], [1, 0, 0],
                                                                  atol=0.02)
    with pytest.raises(FileNotFoundError, match="test split"):
        LayerDataset(DatasetConfig(size=32, length=3, split="test", foregrounds=str(tmp_path / "fg"),
                                   backgrounds=str(tmp_path / "bg")))


def test_stored_dataset_round_trips_exactly_in_any_order_and_resumes(tmp_path):
    ds = LayerDataset(DatasetConfig(size=48, length=5, seed=1))
    manifest = json.loads(write_dataset(ds, tmp_path, workers=2).read_text())
    assert manifest["count"] == 5 and manifest["dtype"] == "uint8"
    back = StoredDataset(tmp_path)
    assert len(back) == 5
    for i in (4, 0, 3, 1, 2):
        assert all(np.array_equal(back[i][k], ds[i][k]) for k in ds[i])
    # 8-bit and PNG-coded: well under the 7 raw bytes per pixel of the three fields
    assert back.reader.bytes_per_sample() < 0.8 * 48 * 48 * 7
    size = (tmp_path / "samples.pack").stat().st_size
    write_dataset(ds, tmp_path)  # everything is there already: nothing is written twice
    assert (tmp_path / "samples.pack").stat().st_size == size
    with pytest.raises(ValueError, match="another configuration"):
        write_dataset(LayerDataset(DatasetConfig(size=48, length=5, seed=2)), tmp_path)
    raw = (tmp_path / "samples.idx").read_bytes()  # a run cut short: the last record is missing
    (tmp_path / "samples.idx").write_bytes(raw[:-10])
    with pytest.raises(FileNotFoundError, match="4 of 5 samples"):
        StoredDataset(tmp_path)
    write_dataset(ds, tmp_path)  # resumed
    assert np.array_equal(StoredDataset(tmp_path)[4]["composite"], ds[4]["composite"])
    raw = tmp_path / "raw"  # no decoding at all: for machines with few cores
    write_dataset(ds, raw, codec="raw")
    assert StoredDataset(raw).reader.bytes_per_sample() > 48 * 48 * 7
    assert all(np.array_equal(StoredDataset(raw)[i]["composite"], ds[i]["composite"]) for i in range(5))


def test_errors_hand_computed():
    pred = np.zeros((2, 2, 3), np.float32)
    gt = np.zeros((2, 2, 3), np.float32)
    pred[0, 0] = [0.1, 0.2, 0.3]
    e = errors(pred, gt)  # the whole layer, as Table 4
    # 12 values: mean |d| = 0.6/12 = 0.05, mean d^2 = 0.14/12, sum |d| = 0.6
    assert e["MAD"] == pytest.approx(0.05 * 1e3)
    assert e["MSE"] == pytest.approx(0.14 / 12 * 1e3)
    assert e["SAD"] == pytest.approx(0.6 * 1e-3)
    region = np.ones((2, 2), bool)
    weight = np.full((2, 2), 0.5, np.float32)
    assert errors(pred, gt, region, weight)["SAD"] == pytest.approx(0.3 * 1e-3)
    region[0, 0] = False
    assert errors(pred, gt, region)["MAD"] == 0.0
    raw = errors(pred, gt, scales={"MAD": 1.0, "MSE": 1.0, "SAD": 1.0})
    assert raw == pytest.approx({"MAD": 0.05, "MSE": 0.14 / 12, "SAD": 0.6})


def test_table_4_scales_make_sad_over_mad_the_layers_value_count():
    """In every row of Table 4, SAD / MAD = 786,432 = 512 x 512 x 3 in the printed units."""
    rng = np.random.default_rng(0)
    pred, gt = rng.uniform(0, 1, (2, 512, 512, 3)).astype(np.float32)
    e = errors(pred, gt)
    assert e["SAD"] / SCALES["SAD"] / (e["MAD"] / SCALES["MAD"]) == pytest.approx(786432, rel=1e-6)
    assert SCALES == {"MAD": 1e3, "MSE": 1e3, "SAD": 1e-3, "LPIPS": 1e2}


def test_scales_parse_describe_and_reject():
    assert parse_scales("") == SCALES
    assert parse_scales("mad=1, SAD=1e-2") == {"MAD": 1.0, "MSE": 1e3, "SAD": 1e-2, "LPIPS": 1e2}
    assert describe_scales(SCALES) == "MAD x 1000, MSE x 1000, SAD / 1000, LPIPS x 100"
    for bad in ("MAD", "FID=2", "MSE=-1", "SAD=nan", "MAD=x"):
        with pytest.raises(ValueError, match="NAME=FACTOR"):
            parse_scales(bad)


def test_layer_statistics_hand_computed():
    alpha = np.zeros((10, 20), np.float32)
    alpha[0:4, 10:20] = 1.0  # top-right block: 40 of 200 pixels
    st = layer_statistics(alpha)  # on the paper's 0 to 100 scale (Table 2: occupancy 37.88, ...)
    assert st["occupancy"] == pytest.approx(20.0)
    assert st["longest_span"] == pytest.approx(50.0)  # 10/20 wide vs 4/10 tall
    assert st["center_y"] == pytest.approx(20.0) and st["center_x"] == pytest.approx(75.0)
    assert layer_statistics(np.zeros((4, 4), np.float32)) == {"occupancy": 0.0, "longest_span": 0.0,
                                                               "center_y": 50.0, "center_x": 50.0}


def test_trimap_like_xu_covers_the_soft_edge():
    alpha = np.zeros((80, 80), np.float32)
    alpha[10:70, 10:70] = 1.0
    alpha[9, 10:70] = 0.5
    tri = trimap_like_xu(alpha, np.random.default_rng(0))
    assert tri[9, 40] == 0.5 and tri[40, 40] == 1.0 and tri[79, 0] == 0.0


def test_lpips_is_none_without_its_weights_never_made_up(monkeypatch, tmp_path):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    assert lpips_metric() is None


def test_baselines_and_report(tmp_path):
    ds = LayerDataset(DatasetConfig(size=48, length=2, seed=2, split="test"))
    seen = []
    result = evaluate(ds, {"a": germer, "b": germer_inpaint, "ours": classical},
                      alpha_fn=lambda comp, trimap: (seen.append(trimap.shape), np.clip(trimap, 0, 1))[1],
                      alpha_source="a stand-in alpha", lpips=None)
    assert seen == [(48, 48)] * 2  # one alpha per composite, from its trimap, shared by the methods
    assert result["count"] == 2 and set(result["methods"]) == {"a", "b", "ours"} and result["size"] == [48, 48]
    for vals in result["methods"].values():
        assert {"fg_MAD", "fg_MSE", "fg_SAD", "bg_MAD", "bg_MSE", "bg_SAD", "fg_band_MAD",
                "bg_covered_MAD"} <= set(vals)
        assert all(np.isfinite(v) and v >= 0 for v in vals.values()) and "fg_LPIPS" not in vals
    assert 1 < result["layer_statistics"]["occupancy"] < 100
    js, md = write_report(result, tmp_path)
    text = md.read_text()
    assert json.loads(js.read_text())["count"] == 2 and "| ours |" in text and "given the a stand-in alpha" in text
    assert "| method | F MAD | F MSE | F SAD | F LPIPS | B MAD |" in text and "n/a" in text
    assert "F band MAD" in text and "B covered MAD" in text and "FBA matting" in text
    assert "| method | hf_ratio | hf_ratio_median | lowpass_MAD | patch_SW | border_tone |" in text


def test_the_hf_ratio_median_is_not_ruled_by_a_flat_truth(monkeypatch):
    """A sample whose true hidden background is flat gives a huge ratio: the mean follows it, the median not."""
    import layeringdiff.evaluate as ev

    ratios = iter([1.0, 0.9, 40.0])
    monkeypatch.setattr(ev, "hidden_texture_metrics", lambda bg, gt, alpha: {"hf_ratio": next(ratios)})
    ds = LayerDataset(DatasetConfig(size=32, length=3, seed=2, split="test"))
    vals = evaluate(ds, {"a": germer}, lpips=None)["methods"]["a"]
    assert vals["hidden_hf_ratio"] == pytest.approx(41.9 / 3) and vals["hidden_hf_ratio_median"] == 1.0


def test_the_offline_split_beats_the_baselines_it_builds_on():
    """The README's evaluation claim, on a small seeded set of held-out sources. In MAD the smooth fill is the one
    to compare (MAD rewards blur; the texture fill has its own figures, tested in test_texture_fill.py)."""
    ds = LayerDataset(DatasetConfig(size=256, length=8, seed=2, split="test"))
    least_change = classical_with(LEAST_CHANGE, "smooth")
    table = evaluate(ds, {"a": germer, "b": germer_inpaint, "ours": classical_smooth, "lc": least_change},
                     seed=2, lpips=None)["methods"]
    assert table["ours"]["fg_band_MAD"] < 0.9 * table["a"]["fg_band_MAD"]
    assert table["ours"]["fg_MAD"] < table["a"]["fg_MAD"]
    assert table["ours"]["bg_MAD"] < min(table["a"]["bg_MAD"], table["b"]["bg_MAD"])
    # why the classical method keeps the projection: the least-change step raises its foreground error
    assert table["ours"]["fg_MAD"] < table["lc"]["fg_MAD"]


def test_a_figure_some_samples_cannot_give_is_averaged_over_the_others():
    """Each mean is over the samples that gave that figure: the hidden-region figures need a hidden region, and a
    NaN from one sample must not poison the mean."""
    ds = [{"composite": np.zeros((16, 16, 3), np.float32), "alpha": np.zeros((16, 16), np.float32),
           "foreground": np.zeros((16, 16, 3), np.float32), "background": np.zeros((16, 16, 3), np.float32)}
          for _ in range(3)]
    ds[0]["alpha"][4:12, 4:12] = 1.0  # only the first sample hides part of its background

    calls = iter([4.0, float("nan"), 6.0])

    def method(comp, alpha):
        return np.zeros_like(comp), np.full_like(comp, next(calls) / 1000)  # B off by 4, NaN, 6 (x 1e-3)

    table = evaluate(ds, {"m": method}, lpips=None)["methods"]["m"]
    assert table["bg_MAD"] == pytest.approx(5.0, rel=1e-4)  # (4 + 6) / 2: the NaN sample left out
    own = hidden_texture_metrics(np.full((16, 16, 3), 0.004, np.float32), ds[0]["background"], ds[0]["alpha"])
    assert own and {f"hidden_{k}" for k in own} <= set(table)
    for k, v in own.items():  # the one sample with a hidden region gives them: not divided by all three
        assert table[f"hidden_{k}"] == pytest.approx(v, rel=1e-5, abs=1e-6)


def test_stored_samples_read_without_pread(tmp_path, monkeypatch):
    """Windows has no os.pread: the reader seeks and reads its own descriptor instead."""
    ds = LayerDataset(DatasetConfig(size=32, length=3, seed=4))
    write_dataset(ds, tmp_path)
    monkeypatch.delattr(os, "pread")
    back = StoredDataset(tmp_path)
    for i in (2, 0, 1):
        assert all(np.array_equal(back[i][k], ds[i][k]) for k in ds[i])


def test_a_foreground_is_resized_premultiplied_so_hidden_colours_never_bleed_into_its_edge():
    rgba = np.zeros((16, 16, 4), np.float32)
    rgba[..., 1] = 1.0  # green wherever alpha is 0: a colour nobody sees
    rgba[4:12, 4:12] = [1.0, 0.0, 0.0, 1.0]  # an opaque red square
    for w, h in ((40, 40), (11, 11)):  # up and down
        out = resize_premultiplied(rgba, w, h)
        edge = (out[..., 3] > 0.02) & (out[..., 3] < 0.98)
        assert edge.any() and out[..., 1][out[..., 3] > 0.02].max() < 1e-5  # no green in the edge or inside
        assert np.allclose(out[..., 0][out[..., 3] > 0.02], 1.0, atol=1e-4)
        assert np.all(out[..., :3][out[..., 3] <= 1e-6] == 0)
    straight = np.clip(__import__("cv2").resize(rgba, (40, 40), interpolation=2), 0, 1)  # the old way bleeds
    assert straight[..., 1][(straight[..., 3] > 0.02) & (straight[..., 3] < 0.98)].max() > 0.3


def test_the_papers_recipe_composes_at_the_foregrounds_size_then_resizes_and_crops_the_centre(tmp_path):
    (tmp_path / "fg").mkdir()
    (tmp_path / "bg").mkdir()
    rgba = np.zeros((120, 60, 4), np.float32)  # tall: the shorter side (60) goes to the sample size
    rgba[20:100, 10:50] = [1.0, 0.0, 0.0, 1.0]
    rgba[..., 1][rgba[..., 3] == 0] = 1.0  # hidden green
    save_png(tmp_path / "fg" / "red.png", rgba)
    yy, xx = np.mgrid[0:50, 0:200]
    save_png(tmp_path / "bg" / "ramp.png", np.dstack([xx / 199.0, yy / 49.0, np.ones((50, 200)) * 0.5]))
    config = DatasetConfig(size=30, length=2, recipe="paper", foregrounds=str(tmp_path / "fg"),
                           backgrounds=str(tmp_path / "bg"))
    s = LayerDataset(config)[0]
    assert s["alpha"].shape == (30, 30)
    # 60 -> 30: the 120 px height becomes 60 and the centre 30 rows are kept: rows 30..90 of the original, inside
    # the red rectangle's rows 20..100, so every row crosses it; columns 10..50 -> 5..25
    assert s["alpha"][:, 8:22].min() > 0.99 and s["alpha"][:, :3].max() < 0.01 and s["alpha"][:, -3:].max() < 0.01
    assert np.allclose(s["foreground"][s["alpha"] > 0.02][:, :2], [1, 0], atol=0.02)  # no green in the edge
    # the background covered the foreground's 120x60 first (its centre columns), then followed the same resize
    b = s["background"]
    assert abs(b[..., 2].mean() - 0.5) < 0.01 and b[..., 0].max() - b[..., 0].min() < 0.2
    assert np.allclose(s["composite"], s["alpha"][..., None] * s["foreground"]
                       + (1 - s["alpha"][..., None]) * s["background"], atol=1e-6)
    with pytest.raises(ValueError, match="recipe must be one of"):
        LayerDataset(DatasetConfig(recipe="centre"))


def test_training_data_is_the_papers_recipe_with_20000_samples_by_default_and_a_held_out_set_keeps_its_count():
    import argparse

    from layeringdiff.cli import _dataset, add_data_args, build_parser

    parser = argparse.ArgumentParser()
    add_data_args(parser, 1000)
    default = _dataset(parser.parse_args([]))
    assert default.config.recipe == "paper" and len(default) == 20000
    assert len(_dataset(parser.parse_args(["--recipe", "random"]))) == 1000
    assert len(_dataset(parser.parse_args(["--count", "7"]))) == 7
    assert len(_dataset(parser.parse_args(["--split", "test"]))) == 1000  # the 20,000 are training samples
    held_out = argparse.ArgumentParser()
    add_data_args(held_out, 60, split="test")
    assert _dataset(held_out.parse_args([])).config.recipe == "random" and len(_dataset(held_out.parse_args([]))) == 60
    assert len(_dataset(held_out.parse_args(["--recipe", "paper"]))) == 60
    cli = build_parser()
    for command in (["dataset", "-o", "x"], ["train", "hfa", "-o", "x"]):
        assert cli.parse_args(command).recipe == "paper"
    assert cli.parse_args(["evaluate", "-o", "x"]).recipe == "random"

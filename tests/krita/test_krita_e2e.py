"""End to end in the real Krita under Xvfb: the docker's buttons against a real backend on loopback, in
each Krita target (`--krita=host,5.3,6.0`, see conftest.py).

The plugin is installed into a temporary HOME by installer/install.py; a driver plugin clicks the
docker's buttons and dumps layers and the document projection as raw bytes for the checks here.
"""

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from layeringdiff.examples import photo, synthetic_composite

from .conftest import artifacts_for
from .harness import SCREENS, current_target, make_home, run_krita

# A Krita that is missing or cannot be set up skips these tests, and fails them in CI (conftest.py).
pytestmark = [pytest.mark.krita]


def bgra_bytes(rgb: np.ndarray) -> bytes:
    u8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    alpha = np.full(u8.shape[:2] + (1,), 255, np.uint8)
    return np.ascontiguousarray(np.concatenate([u8[..., ::-1], alpha], axis=-1)).tobytes()


def read_bgra(path: Path, w: int, h: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8).reshape(h, w, 4).astype(np.int16)


def ellipse(w: int, h: int, centre, axes) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, centre, axes, 0, 0, 360, 255, -1)
    return m


@pytest.fixture(scope="module")
def home(krita_target, tmp_path_factory):
    home = tmp_path_factory.mktemp("krita-home")
    make_home(home)
    return home


def prepare(out: Path, w: int, h: int, photo_rgb: np.ndarray, masks: list[np.ndarray]) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    data = bgra_bytes(photo_rgb)
    (out / "photo.bgra").write_bytes(data)
    for i, m in enumerate(masks, 1):
        (out / f"mask{i}.u8").write_bytes(m.tobytes())
    (out / "spec.json").write_text(json.dumps({"w": w, "h": h}))
    return data


def check_report(report: dict, from_zip: bool = False) -> None:
    steps = [(s["step"], s.get("message", "")) for s in report.get("steps", [])]
    assert "error" not in report, f"{report.get('error', '')}\nsteps: {steps}\n{report.get('log_tail', '')}"
    assert report.get("done"), report.get("fatal") or report.get("log_tail")
    # the docker took the Qt binding of the Krita it runs in
    krita = report["krita"]
    assert krita["qt_binding"] == ("PyQt6" if krita["version"].startswith("6.") else "PyQt5"), krita
    target = current_target()
    if target.stamp:  # a Debian root: the Krita it was built with
        assert krita["version"] == target.stamp["krita"], krita
    # pyzmq from the wheels vendored for Krita's Python (the release zip's, or install.py's), or the system's
    assert ("/layeringdiff_krita/vendor/deps/" in krita["zmq_path"]) == (from_zip or target.vendor_deps), krita
    assert report["screen"] == report["screen_requested"]


def test_split_peel_and_generate_in_real_krita(home, tmp_path):
    w, h = 320, 256
    comp, alpha, _, _ = synthetic_composite(h, w, seed=3)
    mask1 = ((alpha > 0.5) * 255).astype(np.uint8)
    mask2 = ellipse(w, h, (270, 215), (40, 30))  # an object in the background, away from the first
    original = prepare(tmp_path, w, h, comp, [mask1, mask2])
    report = run_krita(home, tmp_path, "split_peel")
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert "Select the foreground first" in steps["split without selection"]["message"]

    # split: group named after the phrase, foreground + background, source hidden and unchanged
    tree = steps["split done"]["tree"]
    names = [(n["name"], n["visible"]) for n in tree]
    assert ("photo", False) in names and ("cat", True) in names
    group = next(n for n in tree if n["name"] == "cat")
    assert [c["name"] for c in group["children"]] == ["background 1", "1 cat"]
    assert [n["name"] for n in tree].index("cat") > [n["name"] for n in tree].index("photo")
    assert (tmp_path / "source_after.bgra").read_bytes() == original
    orig = np.frombuffer(original, np.uint8).reshape(h, w, 4).astype(np.int16)
    fg = read_bgra(tmp_path / "split_fg.bgra", w, h)
    selected = mask1 > 127
    fg_on = fg[..., 3] > 127
    assert (fg_on & selected).sum() / (fg_on | selected).sum() > 0.9  # alpha matches the selection region
    assert fg[..., 3][~selected].mean() < 10 and fg[..., 3][selected].mean() > 200
    bg = read_bgra(tmp_path / "split_bg.bgra", w, h)
    assert bg[..., 3].min() == 255  # the background is complete behind the foreground
    visible = np.abs(read_bgra(tmp_path / "projection_split.bgra", w, h) - orig)
    assert visible.max() <= 1, f"visible result differs by {visible.max()}/255"
    assert report["active_after_split"] == "background 1"

    assert (tmp_path / "docker_after_split.png").stat().st_size > 1000
    for shot in ("docker_after_split.png", "krita_after_split.png", "split_box.png"):
        shutil.copy2(tmp_path / shot, artifacts_for(report) / shot)

    # peel: second foreground inside the same group, above the new background; old background hidden
    assert "texture fill" in steps["split done"]["message"] and "smooth fill" in steps["peel done"]["message"]
    assert "closed-form matting" in steps["peel done"]["message"]  # the docker's Matting choice, reported back
    group = next(n for n in steps["peel done"]["tree"] if n["name"] == "cat")
    assert [(c["name"], c["visible"]) for c in group["children"]] == [
        ("background 1", False), ("background 2", True), ("2 ball", True), ("1 cat", True)]
    peel_fg = read_bgra(tmp_path / "peel_fg.bgra", w, h)
    assert (peel_fg[..., 3] > 127)[mask2 > 127].mean() > 0.8 and (peel_fg[..., 3] > 127)[mask2 == 0].mean() < 0.02
    stack = np.abs(read_bgra(tmp_path / "projection_peel.bgra", w, h) - orig)
    assert stack.max() <= 2, f"three-layer stack differs by {stack.max()}/255"  # two 8-bit splits: 1 level each

    # a job whose document stopped being the active one: the result waits and goes to its own document
    moved = steps["split other active"]
    assert moved["active_doc_is_other"] and [n["name"] for n in moved["other_tree"]] == ["Background"]
    assert "switch to the document" in moved["message"]
    group = next(n for n in moved["tree"] if n["name"] == "cat")
    assert "again" not in [c["name"] for c in group["children"]]
    group = next(n for n in steps["split inserted on return"]["tree"] if n["name"] == "cat")
    assert "again" in [c["name"] for c in group["children"]]

    # generate without model weights: the backend's clear error names them and the fix; nothing changed
    gen = steps["generate"]
    assert "not available" in gen["message"] and "sdxl" in gen["message"] and "models fetch" in gen["message"]
    assert gen["unchanged"]
    learned = steps["vitmatte split"]
    assert "vitmatte" in learned["message"] and "models fetch vitmatte" in learned["message"] and learned["unchanged"]


def test_cancel_and_backend_killed_leave_the_document_unchanged(home, tmp_path):
    w = h = 2048
    rgb = cv2.resize(photo("astronaut"), (w, h), interpolation=cv2.INTER_CUBIC)
    mask = ellipse(w, h, (1024, 1100), (600, 700))
    original = prepare(tmp_path, w, h, rgb, [mask])
    report = run_krita(home, tmp_path, "cancel_kill", timeout=300)
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert "Cancelled" in steps["cancel"]["message"] and steps["cancel"]["unchanged"]
    assert (tmp_path / "cancel_source.bgra").read_bytes() == original
    after = steps["after kill"]
    assert "lost the backend" in after["message"] and "unchanged" in after["message"]
    assert after["restart_visible"] and after["unchanged"]
    assert "connected" in steps["restarted"]["status"]


def test_16_bit_and_half_and_full_float_documents(home, tmp_path):
    w, h = 160, 128
    comp, alpha, _, _ = synthetic_composite(h, w, seed=5)
    mask = ((alpha > 0.5) * 255).astype(np.uint8)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "mask1.u8").write_bytes(mask.tobytes())
    rgba = np.dstack([comp, np.ones(alpha.shape, np.float32)])
    # float documents hold HDR values: a highlight above white over the object and around it (clipped before: the
    # picture up to 548/255 off)
    yy, xx = np.mgrid[:h, :w]
    hdr = rgba.copy()
    hdr[..., 0] += 0.9 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / 400.0)
    originals = {
        "U16": np.round(rgba[..., [2, 1, 0, 3]] * 65535).astype("<u2"),  # Krita's integer layers are BGRA
        "F16": hdr.astype("<f2"),  # float layers are RGBA
        "F32": hdr.astype("<f4"),
    }
    assert originals["F32"][..., 0].max() > 1.5
    for depth, arr in originals.items():
        (tmp_path / f"photo_{depth}.raw").write_bytes(np.ascontiguousarray(arr).tobytes())
    (tmp_path / "spec.json").write_text(json.dumps({"w": w, "h": h, "depths": list(originals)}))
    report = run_krita(home, tmp_path, "depths", screen=SCREENS["small"])  # a laptop screen
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    for depth, arr in originals.items():
        group = next(n for n in steps[f"split {depth}"]["tree"] if n["type"] == "grouplayer")
        assert [c["name"] for c in group["children"]] == ["background 1", "1 foreground"]
        got = np.frombuffer((tmp_path / f"projection_{depth}.raw").read_bytes(), arr.dtype).reshape(arr.shape)
        scale = 65535.0 if depth == "U16" else 1.0
        err = np.abs(got.astype(np.float64) - arr.astype(np.float64)).max() / scale
        assert err <= 1 / 255, f"{depth}: visible result differs by {err * 255:.3f}/255"
        fg = np.frombuffer((tmp_path / f"fg_{depth}.raw").read_bytes(), arr.dtype).reshape(arr.shape)
        fg_alpha = fg[..., 3].astype(np.float64) / scale
        assert ((fg_alpha > 0.5) == (mask > 127)).mean() > 0.95


def test_generate_and_split_by_phrase_with_tiny_models(tiny_models, tmp_path_factory, tmp_path):
    root, _ = tiny_models
    home = tmp_path_factory.mktemp("krita-home-models")
    make_home(home, models_dir=root)
    w, h = 160, 128
    comp, _, _, _ = synthetic_composite(h, w, seed=6)
    original = prepare(tmp_path, w, h, comp, [])
    spec = json.loads((tmp_path / "spec.json").read_text())
    (tmp_path / "spec.json").write_text(json.dumps({**spec, "gen_w": 256, "gen_h": 320}))
    report = run_krita(home, tmp_path, "models", timeout=300)
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["capabilities"]["models"]["sdxl"] == "ready"
    gen = steps["generate"]
    assert gen["size"] == [256, 320], gen["message"]  # a new document of the requested size
    group = next(n for n in gen["tree"] if n["type"] == "grouplayer")
    assert group["name"] == "a red fox"
    assert [c["name"] for c in group["children"]] == ["background 1", "1 a red fox"]
    x, y, bw, bh = report["generated_fg_bounds"]
    assert x >= 0 and y >= 0 and x + bw <= 256 and y + bh <= 320
    split = steps["split by phrase"]
    group = next(n for n in split["tree"] if n["type"] == "grouplayer")
    assert group["name"] == "a cat" and [c["name"] for c in group["children"]] == ["background 1", "1 a cat"]
    orig = np.frombuffer(original, np.uint8).reshape(h, w, 4).astype(np.int16)
    assert np.abs(read_bgra(tmp_path / "phrase_projection.bgra", w, h) - orig).max() <= 1
    guided = steps["guided generate"]
    assert "guided by the sketch lines" in guided["message"], guided["message"]
    assert guided["size"] == [256, 256] and guided["strength_enabled"]  # the 160x128 canvas, within the limits
    assert sorted(n["name"] for n in guided["tree"] if n["type"] == "grouplayer") == ["a bird", "a cat"]
    every = steps["split into all layers"]  # through the docker's button, the protocol and both models
    assert "SAM found no object to split off in the picture" in every["message"] and every["unchanged"], every


def test_remote_backend_with_keys_typed_into_settings(secure_backend, curve_keys, tmp_path_factory, tmp_path):
    home = tmp_path_factory.mktemp("krita-home-remote")
    make_home(home, settings={"autostart": False, "endpoint": secure_backend.local})
    w, h = 160, 128
    comp, alpha, _, _ = synthetic_composite(h, w, seed=8)
    original = prepare(tmp_path, w, h, comp, [((alpha > 0.5) * 255).astype(np.uint8)])
    spec = json.loads((tmp_path / "spec.json").read_text())
    (tmp_path / "spec.json").write_text(json.dumps({**spec, "server_key": secure_backend.ready["server_key"],
                                                    "client_key": str(curve_keys / "secrets" / "alice.key_secret")}))
    report = run_krita(home, tmp_path, "remote")
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert "requires keys" in steps["refused"]["status"] and steps["refused"]["restart_shown"]
    assert "connected" in steps["connected"]["status"]
    assert steps["split"]["message"].startswith("Split 'photo' into group"), steps["split"]["message"]
    group = next(n for n in steps["split"]["tree"] if n["type"] == "grouplayer")
    assert [c["name"] for c in group["children"]] == ["background 1", "1 foreground"]
    orig = np.frombuffer(original, np.uint8).reshape(h, w, 4).astype(np.int16)
    assert np.abs(read_bgra(tmp_path / "projection.bgra", w, h) - orig).max() <= 1
    assert secure_backend.ready["server_key"] in (home / ".config" / "kritarc").read_text()  # Apply saved the keys


# ---- undo, layer properties, the docker's size, first start ---------------------------------------------------
def two_selections_over_paper(out: Path, w: int, h: int, seed: int) -> None:
    """A composite with two selections (the object's, then an ellipse for a peel) and the paper files."""
    comp, alpha, _, _ = synthetic_composite(h, w, seed=seed)
    prepare(out, w, h, comp, [((alpha > 0.5) * 255).astype(np.uint8), ellipse(w, h, (270, 215), (40, 30))])
    paper_files(out, w, h)


def paper_files(out: Path, w: int, h: int) -> None:
    """A paper layer with a pattern, the same with its right half transparent, and a left-to-right fade mask."""
    yy, xx = np.mgrid[:h, :w]
    paper = np.dstack([200 + (xx % 40 > 20) * 40, 220 - (yy % 30), 180 + (xx + yy) % 50, np.full_like(xx, 255)])
    paper = paper.astype(np.uint8)
    (out / "paper.bgra").write_bytes(paper.tobytes())
    half = paper.copy()
    half[:, w // 2:] = 0
    (out / "paper_half.bgra").write_bytes(half.tobytes())
    (out / "fade.u8").write_bytes((xx * 255 // (w - 1)).astype(np.uint8).tobytes())


def raw(out: Path, name: str, w: int, h: int) -> np.ndarray:
    return read_bgra(out / name, w, h)


def fits_the_screen(fit: dict) -> None:
    """The docker asks for at most 400 px of height and the message is on screen, inside the docker."""
    print(f"the docker asks for {fit['min_height']} px of height (docs/krita.md; `pytest -rP` shows it)")
    assert fit["min_height"] <= 400 and fit["widget_min_height"] <= 400, fit
    mx, my, mw, mh = fit["message"]
    sx, sy, sw, sh = fit["screen"]
    dx, dy, dw, dh = fit["docker"]
    vx, vy, vw, vh = fit["message_visible"]
    assert fit["docker_visible"] and fit["message_text"] and vw > 0 and vh > 0, fit
    assert sx <= mx and sy <= my and my + min(mh, vh) <= sy + sh and mx + 20 <= sx + sw, fit  # on the screen
    assert dy <= my and my + min(mh, vh) <= dy + dh, fit  # inside the docker


def states_match(out: Path, prefix: str, steps: int, w: int, h: int, before: np.ndarray, after: np.ndarray) -> int:
    """How many of the states that Ctrl+Z / Ctrl+Shift+Z reach show neither the picture before nor after
    (a state in between is reached once by undo and once by redo: counted once)."""
    odd = set()
    for kind in ("undo", "redo"):
        for i in range(1, steps + 1):
            state = raw(out, f"{prefix}_{kind}{i}.bgra", w, h)
            if not (np.array_equal(state, before) or np.array_equal(state, after)):
                odd.add(steps - i if kind == "undo" else i)  # how many of the operation's steps are done
    assert np.array_equal(raw(out, f"{prefix}_undo{steps}.bgra", w, h), before)  # all the way back
    assert np.array_equal(raw(out, f"{prefix}_redo{steps}.bgra", w, h), after)
    return len(odd)


def test_undo_and_redo_never_show_a_half_built_picture(home, tmp_path):
    w, h = 320, 256
    two_selections_over_paper(tmp_path, w, h, seed=3)
    report = run_krita(home, tmp_path, "undo", screen=SCREENS["large"], timeout=300)
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    failed = steps["generate without a document"]
    assert failed["documents"] == 0 and "not available" in failed["message"], failed
    assert "models fetch" in failed["message"] and "Settings" in failed["message"]
    assert "--model " not in failed["message"]
    before, split = raw(tmp_path, "undo_before.bgra", w, h), raw(tmp_path, "undo_split.bgra", w, h)
    peel = raw(tmp_path, "undo_peel.bgra", w, h)
    assert np.abs(split - before).max() <= 1 and np.abs(peel - before).max() <= 2
    # as few steps as Krita allows, each showing the picture from before or after (opaque source, normal mode)
    assert steps["split"]["entries"] == ["Add Layer", "Property Changes"]
    assert steps["peel"]["entries"] == ["Add Layer", "Property Changes", "Quick Ungroup"]
    assert states_match(tmp_path, "split", 2, w, h, before, split) == 0
    assert states_match(tmp_path, "peel", 3, w, h, split, peel) == 0
    # all the way back restores the picture exactly, and forward again
    assert np.array_equal(raw(tmp_path, "undo_all_back.bgra", w, h), before)
    assert [(n["name"], n["visible"]) for n in steps["all undone"]["tree"] if n["type"] != "selectionmask"] == [
        ("photo", True)]
    assert np.array_equal(raw(tmp_path, "undo_all_forward.bgra", w, h), peel)
    # the docker's Undo takes back the last operation exactly, in one click
    undo = steps["undo button"]
    assert undo["message"].startswith("Took back the peel of 'background 1'"), undo["message"]
    assert np.array_equal(raw(tmp_path, "undo_button.bgra", w, h), split)
    assert undo["tree"] == steps["split"]["tree"] and undo["active"] == "background 1"
    assert steps["split"]["undo_label"] == "Undo split" and not undo["enabled_after"]
    assert "Nothing to take back" in steps["undo again"]["message"]
    deselect = steps["undo after deselect"]
    (texts, row), gone = deselect["deselected"]
    assert texts[row] == "Deselect" and gone, deselect  # Krita's own entry, the selection dropped
    assert re.fullmatch(r"Took back the split of '[^']+' and the Deselect after it: the document is as it was "
                        r"before\.", deselect["message"]), deselect
    assert deselect["tree"] == deselect["before_tree"] and deselect["selection_back"]
    refused = steps["undo refused"]
    assert "changed after the split" in refused["message"] and refused["unchanged"], refused["message"]
    # 50% multiply over paper: the same picture after; one state in between differs (both layers shown)
    blend_before, blend_after = raw(tmp_path, "blend_before.bgra", w, h), raw(tmp_path, "blend_split.bgra", w, h)
    assert np.abs(blend_after - blend_before).max() <= 1
    assert steps["blend split"]["entries"] == ["Add Layer", "Property Changes"]
    assert states_match(tmp_path, "blend", 2, w, h, blend_before, blend_after) <= 1
    # a second peel right after the first, the Layers docker untouched: its three steps, every state whole
    peel2 = steps["peel2"]
    assert peel2["entries"] == ["Add Layer", "Property Changes", "Quick Ungroup"], peel2
    assert "would not hide" not in peel2["message"], peel2["message"]
    p_before, p_after = raw(tmp_path, "peel2_before.bgra", w, h), raw(tmp_path, "peel2_after.bgra", w, h)
    assert np.abs(p_after - p_before).max() <= 2 and states_match(tmp_path, "peel2", 3, w, h, p_before, p_after) == 0
    fits_the_screen(report["fit_after_split"])
    shutil.copy2(tmp_path / "fit_after_split.png", artifacts_for(report) / "screen_1600x1000.png")


def test_layer_properties_are_kept(home, tmp_path):
    w, h = 320, 256
    two_selections_over_paper(tmp_path, w, h, seed=4)
    report = run_krita(home, tmp_path, "props", screen=SCREENS["small"], timeout=300)
    check_report(report)
    cases = report["cases"]

    def unchanged(case, tolerance=1, after="after"):
        diff = np.abs(raw(tmp_path, f"{case}_{after}.bgra", w, h) - raw(tmp_path, f"{case}_before.bgra", w, h))
        assert diff.max() <= tolerance, f"{case}: visible picture changed by {diff.max()}/255 ({cases[case]})"

    unchanged("multiply")
    assert cases["multiply"]["group"] == [128, "multiply", True]
    assert cases["multiply"]["inner"] == [["background 1", 255, "normal"], ["1 foreground", 255, "normal"]]
    unchanged("hidden", 0)
    assert not cases["hidden"]["group_visible"] and cases["hidden"]["steps"] == 1
    assert "hidden too" in cases["hidden"]["message"]
    unchanged("inherit")
    assert cases["inherit"]["group"] is True
    unchanged("label")
    assert cases["label"]["label"] == 4 and cases["label"]["folder"] == ["below", "photo", "photo split", "above"]
    unchanged("masks")
    style = np.abs(raw(tmp_path, "masks_nostyle.bgra", w, h) - raw(tmp_path, "masks_before.bgra", w, h))
    assert style.max() > 50  # the layer style shows, and the split kept it
    assert cases["masks"]["style"] and [c[1] for c in cases["masks"]["children"]] == [
        "paintlayer", "paintlayer", "transparencymask", "filtermask"]
    unchanged("locked")
    unchanged("locked", 2, "peel")
    assert cases["locked"]["message"].startswith("Peeled '2 foreground' and 'background 2'"), cases["locked"]
    assert "is a vector layer: choose a paint layer" in cases["vector"]["message"]
    clear = cases["transparent"]  # before: an empty foreground layer, and no word of why
    assert clear["message"].startswith("The selection covers only transparent pixels of 'paper'"), clear
    assert clear["unchanged"] and clear["idle"], clear
    unsplit = cases["peel unsplit"]
    assert unsplit["message"].startswith("'photo' is not a background a split left, so Peel made a group"), unsplit
    group = next(n for n in unsplit["tree"] if n["name"] == "photo split")
    assert [c["name"] for c in group["children"]] == ["background 1", "1 foreground"]
    # a wide-gamut layer keeps its profile: what shows moves only where the alpha is soft, as Krita mixes the layers
    # in the document's sRGB (1.5% of the values, up to 18/255; the same numbers in the document's profile were up
    # to 62/255 off on 38% of them), and the message says why
    profile = cases["profile"]
    assert profile["inner"] == [profile["source"]] * 2 and profile["source"] != profile["document"], profile
    moved = np.abs(raw(tmp_path, "profile_after.bgra", w, h) - raw(tmp_path, "profile_before.bgra", w, h))
    assert (moved > 2).sum() <= 0.03 * moved.size and moved.max() <= 30, ((moved > 2).sum(), moved.max())
    assert "it has its own colour profile (WideRGB-elle-V2-g22.icc), which the new layers keep" in profile["message"]
    # the layer picked in the second view is split, not the first view's current one
    views = cases["views"]
    assert views["first"] == "paper" and views["message"].startswith("Split 'photo' into group 'photo split'"), views
    unchanged("views")
    # a layer past the canvas: its canvas part split, the rest kept in the background, whole in a grown canvas
    offset = cases["offset"]
    assert "its pixels past the canvas are not split: 'background 1' keeps them as they were" in offset["message"], \
        offset
    unchanged("offset")
    assert offset["grown"] == [w + 40, h + 30] and not offset["visible"], offset
    grown = read_bgra(tmp_path / "offset_grown.bgra", w + 40, h + 30)
    source = raw(tmp_path, "offset_source.bgra", w, h)
    past = np.ones((h, w), bool)
    past[30:, 40:] = False  # the old canvas
    assert np.abs(grown[:h, :w][past] - source[past]).max() <= 1  # the layer's pixels past the old canvas, all
    # Active Channels: the group of a layer shown without its red hides the red too (before: up to 191/255 off)
    unchanged("channels")
    assert ["Red", False] in cases["channels"]["group"] or ["R", False] in cases["channels"]["group"], cases["channels"]
    animated = cases["animated"]
    assert animated["animated"] and animated["unchanged"], animated
    assert animated["message"].startswith("'photo' is animated: its layers would hold this frame only"), animated
    fits_the_screen(report["fit_props"])
    shutil.copy2(tmp_path / "fit_props.png", artifacts_for(report) / "screen_1366x768.png")


@pytest.mark.slow
def test_first_start_from_an_empty_kernel_cache_is_starting_never_lost(home, tmp_path):
    w, h = 160, 128
    comp, alpha, _, _ = synthetic_composite(h, w, seed=9)
    prepare(tmp_path, w, h, comp, [((alpha > 0.5) * 255).astype(np.uint8)])
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    report = run_krita(home, tmp_path, "first_start", timeout=900, env={"NUMBA_CACHE_DIR": str(cache)})
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    statuses = steps["started"]["statuses"]
    assert steps["started"]["connected"] and not any("lost" in s for s in statuses), statuses
    starting = [s for s in statuses if re.search(r"starting: \d+ s, ", s)]
    assert any("compiling the image kernels" in s for s in starting) and any("first start" in s for s in starting)
    assert len(starting) >= 5  # the elapsed time counts up while it compiles
    assert steps["started"]["screenshot"] and list(cache.rglob("*.nbi"))
    assert steps["split"]["message"].startswith("Split 'photo'"), steps["split"]["message"]
    shutil.copy2(tmp_path / "first_start.png", artifacts_for(report) / "first_start.png")


def test_generate_into_the_open_document_is_one_undo_step(tiny_models, tmp_path_factory, tmp_path):
    root, _ = tiny_models
    home = tmp_path_factory.mktemp("krita-home-models-undo")
    make_home(home, models_dir=root)
    w, h = 320, 256
    comp, _, _, _ = synthetic_composite(h, w, seed=10)
    prepare(tmp_path, w, h, comp, [])
    report = run_krita(home, tmp_path, "generate_undo", timeout=300)
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    gen = steps["generate"]
    assert gen["entries"] == ["Add Layer"], gen
    assert [c["name"] for c in next(n for n in gen["tree"] if n["name"] == "a red fox")["children"]] == [
        "background 1", "1 a red fox"]
    before, after = raw(tmp_path, "generate_before.bgra", w, h), raw(tmp_path, "generate_after.bgra", w, h)
    assert not np.array_equal(before, after)  # the generated layers cover part of the photo
    assert states_match(tmp_path, "generate", 1, w, h, before, after) == 0
    assert steps["undo button"]["message"].startswith("Took back the generated group 'a red fox'")
    assert np.array_equal(raw(tmp_path, "generate_undone.bgra", w, h), before)
    assert [n["name"] for n in steps["undo button"]["tree"] if n["type"] != "selectionmask"] == ["photo"]


def card_disc_ball(w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured card, a textured disc over its corner (in front: it keeps its round outline) and a ball apart, on
    a textured ground: the picture (RGB floats), the card's whole rectangle (as an artist selects it, the hidden
    corner too), the disc and the ball (u8 masks)."""
    yy, xx = np.mgrid[0:h, 0:w]
    card = (xx >= 40) & (xx < 210) & (yy >= 40) & (yy < 180)
    disc = np.hypot(xx - 205, yy - 170) < 50
    ball = np.hypot(xx - 280, yy - 50) < 28
    rgb = 0.5 + 0.1 * np.sin(xx / 5.0)[..., None] * np.array([1.0, 0.6, 0.3]) + 0.05 * np.cos(yy / 4.0)[..., None]
    rgb[card] = np.array([0.8, 0.3, 0.25]) + 0.05 * np.sin(yy[card] / 2.0)[:, None]
    rgb[disc] = np.array([0.2, 0.35, 0.85]) + 0.05 * np.cos(xx[disc] / 2.0)[:, None]
    rgb[ball] = np.array([0.3, 0.75, 0.2]) + 0.04 * np.sin((xx + yy)[ball] / 3.0)[:, None]
    return rgb.astype(np.float32), *((m * 255).astype(np.uint8) for m in (card, disc, ball))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_split_into_layers_from_selection_masks_and_from_a_label_layer(home, tmp_path):
    w, h = 320, 256
    rgb, card, disc, ball = card_disc_ball(w, h)
    original = prepare(tmp_path, w, h, rgb, [card, disc, ball])
    paint = np.zeros((h, w, 4), np.uint8)  # BGRA: the card red, the disc blue over it, the ball green
    paint[card > 0] = (30, 40, 200, 255)
    paint[disc > 0] = (220, 90, 20, 255)
    paint[ball > 0] = (40, 180, 60, 255)
    (tmp_path / "labels.bgra").write_bytes(paint.tobytes())
    report = run_krita(home, tmp_path, "layers", screen=SCREENS["large"], timeout=300)
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert "Give 'photo' its objects first" in steps["layers without objects"]["message"]
    before = np.frombuffer(original, np.uint8).reshape(h, w, 4).astype(np.int16)
    assert np.array_equal(raw(tmp_path, "layers_before.bgra", w, h), before)

    # one group of four layers, the front object on top, the masks kept under the hidden source
    done = steps["layers"]
    assert done["message"].startswith("Split 'photo' into group 'photo split' (1 disc, 2 ball, 3 card, "
                                      "background 3)"), done
    group = next(n for n in done["tree"] if n["name"] == "photo split")
    assert [(c["name"], c["visible"]) for c in group["children"]] == [
        ("background 3", True), ("3 card", True), ("2 ball", True), ("1 disc", True)]
    assert ("photo", False) in [(n["name"], n["visible"]) for n in done["tree"]]
    assert done["masks"] == [["card", "selectionmask"], ["ball", "selectionmask"], ["disc", "selectionmask"]]
    assert done["active"] == "background 3" and done["undo_label"] == "Undo split"
    advance, width = done["hint"]  # the phrase field's hint shows whole (its frame and margins: about 10 px)
    assert advance <= width - 10, done["hint"]
    split = raw(tmp_path, "layers_split.bgra", w, h)
    assert np.abs(split - before).max() <= 1, "the visible picture is the layer's within a level"
    front, back = raw(tmp_path, "layers_1_disc.bgra", w, h), raw(tmp_path, "layers_3_card.bgra", w, h)
    assert iou(front[..., 3] > 127, disc > 0) > 0.95
    held = back[..., 3] > 127
    assert iou(held & (disc == 0), (card > 0) & (disc == 0)) > 0.95  # the card where it shows
    under = held & (disc > 0)  # it runs on under the disc (stages/peel.hidden_share), inside its own rectangle
    assert under.sum() > 100 and (card[under] > 0).mean() > 0.95, (under.sum(), (card[under] > 0).mean())
    assert iou(raw(tmp_path, "layers_2_ball.bgra", w, h)[..., 3] > 127, ball > 0) > 0.95
    assert raw(tmp_path, "layers_background_3.bgra", w, h)[..., 3].min() == 255
    # each undo and redo state shows the picture from before or after; the docker's Undo is one click
    assert done["entries"] == ["Add Layer", "Property Changes"]
    assert states_match(tmp_path, "layers", 2, w, h, before, split) == 0
    undone = steps["layers undo button"]
    assert undone["message"].startswith("Took back the split of 'photo'"), undone["message"]
    assert [(n["name"], n["visible"]) for n in undone["tree"]] == [("photo", True)]
    assert np.array_equal(raw(tmp_path, "layers_undo_button.bgra", w, h), before)
    for shot in ("docker_after_layers.png", "krita_after_layers.png"):
        shutil.copy2(tmp_path / shot, artifacts_for(report) / shot)

    # a label layer in flat colours: named by colour, ordered by the backend (the disc in front)
    labelled = steps["labels"]
    group = next(n for n in labelled["tree"] if n["name"] == "photo split")
    # colours numbered from the largest area: the card 1, the disc 2, the ball 3; the disc in front of the card it
    # overlaps, the ball touching nothing behind them
    assert [c["name"] for c in group["children"]] == ["background 3", "3 #3cb428", "2 #c8281e", "1 #145adc"], \
        labelled["message"]
    assert np.abs(raw(tmp_path, "labels_split.bgra", w, h) - before).max() <= 1
    assert iou(raw(tmp_path, "labels_1_145adc.bgra", w, h)[..., 3] > 127, disc > 0) > 0.95
    # the docker shows that order front first in the phrase field, and says how to change it
    assert labelled["phrase"] == "#145adc; #c8281e; #3cb428", labelled["phrase"]
    # the green patch touches neither: no boundary orders it, and the message says how it was placed
    assert "ordered from where they touch (1 touching no other goes behind them, the smaller in front) (the phrase " \
        "field lists it front first" in labelled["message"], labelled["message"]
    # the artist's order, the other way round: the ball in front, then the card over the disc
    reordered = steps["reordered"]
    group = next(n for n in reordered["tree"] if n["name"] == "photo split")
    assert [c["name"] for c in group["children"]] == ["background 3", "3 #145adc", "2 #c8281e", "1 #3cb428"], \
        reordered["message"]
    assert "in the order you gave" in reordered["message"] and reordered["phrase"] == "#3cb428; #c8281e; #145adc"
    assert [n["name"] for n in reordered["tree"]].count("photo split") == 1  # the first group was taken back
    assert np.abs(raw(tmp_path, "reordered_split.bgra", w, h) - before).max() <= 1
    card_layer = raw(tmp_path, "reordered_2_c8281e.bgra", w, h)[..., 3] > 127
    assert iou(card_layer, (card > 0) & (disc == 0)) > 0.95  # the label layer's parts: the disc's colour there
    # taken back again, then Krita quits cleanly (the docker's delayed activation once ran into the deleted window)
    assert [n["name"] for n in steps["reordered undo button"]["tree"]] == ["photo", "labels"]
    assert report["exit_code"] == 0 and not report["fatal"], report["fatal"] or report["log_tail"]


def test_the_cli_s_layered_files_open_in_krita_as_the_split_made_them(home, tmp_path):
    """`split --labels` into an .ora and a .psd, opened by Krita's own importers: one group holding the objects
    (front on top) and the background, the original hidden below it, and Krita's composite of those layers is the
    picture within a level."""
    import subprocess
    import sys

    from PIL import Image

    w, h = 320, 256
    rgb, card, disc, ball = card_disc_ball(w, h)
    labels = np.zeros((h, w), np.uint8)
    labels[card > 0], labels[ball > 0], labels[disc > 0] = 3, 2, 1  # the disc in front of the card
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(tmp_path / "scene.png")
    # the same picture in Adobe RGB (its profile from Ghostscript's, which GIMP brings along)
    a98 = Path("/usr/share/color/icc/ghostscript/a98.icc")
    if not a98.exists():
        pytest.fail(f"{a98} is missing (apt-get install gimp brings it)")
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(tmp_path / "tagged.png", icc_profile=a98.read_bytes())
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    made = {"layers.ora": "scene.png", "layers.psd": "scene.png", "tagged.psd": "tagged.png",
            "tagged.ora": "tagged.png"}
    for name, source in made.items():
        proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", str(tmp_path / source), "--labels",
                               str(tmp_path / "labels.png"), "-o", str(tmp_path / name), "--no-png", "-q"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    (tmp_path / "spec.json").write_text(json.dumps({"w": w, "h": h, "files": list(made)}))
    report = run_krita(home, tmp_path, "open_files", timeout=240)
    check_report(report)
    steps = {s["step"]: s for s in report["steps"]}
    picture = np.asarray(Image.open(tmp_path / "scene.png").convert("RGB"), np.int16)[..., ::-1]
    for name in ("layers.ora", "layers.psd"):
        opened = steps[f"open {name}"]
        assert opened["opened"] and opened["size"] == [w, h], opened
        assert (opened["model"], opened["depth"]) == ("RGBA", "U8"), opened
        # Krita lists a node's children bottom first
        assert [(n["name"], n["type"], n["visible"]) for n in opened["tree"]] == [
            ("original", "paintlayer", False), ("scene split", "grouplayer", True)], opened["tree"]
        assert [(n["name"], n["visible"]) for n in opened["tree"][1]["children"]] == [
            ("background", True), ("object 3", True), ("object 2", True), ("object 1", True)], opened["tree"]
        shown = raw(tmp_path, f"open_{name}.bgra", w, h)
        assert shown[..., 3].min() == 255
        assert np.abs(shown[..., :3] - picture).max() <= 1, f"{name}: Krita's composite is the picture"
    # a picture with a colour profile: its .psd opens in that space, its composite the picture's own values; its
    # .ora opens in sRGB (each layer converted on its own), as the CLI's note and docs/cli.md say
    tagged = steps["open tagged.psd"]
    assert tagged["opened"] and "A98" in tagged["profile"], tagged
    shown = raw(tmp_path, "open_tagged.psd.bgra", w, h)
    assert np.abs(shown[..., :3] - picture).max() <= 1, "tagged.psd: Krita's composite is the picture"
    assert "sRGB" in steps["open tagged.ora"]["profile"], steps["open tagged.ora"]

"""`layeringdiff split` as a user runs it: a real process, real files."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from layeringdiff.examples import synthetic_composite
from layeringdiff.io.images import save_png
from layeringdiff.io.ora import flatten, read_ora
from PIL import Image


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "layeringdiff", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    comp, alpha, _, _ = synthetic_composite(160, 200, seed=1)
    save_png(d / "photo.png", comp)
    save_png(d / "mask.png", (alpha > 0.5).astype(np.float32))
    save_png(d / "empty.png", np.zeros_like(alpha))
    save_png(d / "full.png", np.ones_like(alpha))
    save_png(d / "small.png", np.ones((10, 10), np.float32))
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    return d


def check_ora_recomposites(path, original_png):
    layers, w, h = read_ora(path)
    assert [la.name for la in layers] == ["foreground", "background", "original"]
    assert not layers[2].visible
    original = np.asarray(Image.open(original_png).convert("RGB"), np.float32) / 255
    merged = flatten(layers, w, h)
    assert merged.shape == (h, w, 4) and np.all(merged[..., 3] > 0.999)
    assert np.abs(merged[..., :3] - original).max() <= 1 / 255 + 1e-5


def test_split_with_mask(inputs, tmp_path):
    out = tmp_path / "result.ora"
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", out)
    assert proc.returncode == 0, proc.stderr
    for name in ("foreground", "background", "alpha"):
        assert (tmp_path / f"result_{name}.png").is_file()
    assert Image.open(tmp_path / "result_foreground.png").mode == "RGBA"
    assert "done" in proc.stderr and "recomposition error" in proc.stderr
    check_ora_recomposites(out, inputs / "photo.png")


def test_a_broken_model_config_costs_the_default_split_nothing_and_refuses_vitmatte(inputs, tmp_path):
    """The default matting (auto) asks for no model: an unreadable model config is said and the split goes on with
    the closed form; naming ViTMatte needs the config, and the error names the file."""
    config = tmp_path / "models.json"
    config.write_text("{not json")
    env = {**os.environ, "LAYERINGDIFF_MODELS_CONFIG": str(config)}
    command = [sys.executable, "-m", "layeringdiff", "split", str(inputs / "photo.png"), "--mask",
               str(inputs / "mask.png"), "--no-png"]
    proc = subprocess.run([*command, "-o", str(tmp_path / "auto.ora")], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"closed-form matting: cannot read the model config {config}" in proc.stderr
    assert "closed-form matting) in" in proc.stderr.splitlines()[-1]
    check_ora_recomposites(tmp_path / "auto.ora", inputs / "photo.png")
    proc = subprocess.run([*command, "-o", str(tmp_path / "vit.ora"), "--matting", "vitmatte"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 2 and str(config) in proc.stderr and not (tmp_path / "vit.ora").exists()


def test_split_with_box(inputs, tmp_path):
    out = tmp_path / "box.ora"
    proc = run("split", inputs / "photo.png", "--box", "40,20,160,140", "-o", out, "--no-png", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and not (tmp_path / "box_alpha.png").exists()
    check_ora_recomposites(out, inputs / "photo.png")


def test_split_bundled_example(tmp_path):
    proc = run("split", "--example", "coffee", "-o", tmp_path / "coffee.ora")
    assert proc.returncode == 0, proc.stderr
    layers, w, h = read_ora(tmp_path / "coffee.ora")
    assert (w, h) == (600, 400)
    fg_alpha = layers[0].pixels[..., 3]
    assert 0.2 < fg_alpha.mean() < 0.8


@pytest.mark.parametrize("args,words", [
    (["{d}/broken.png", "--mask", "{d}/mask.png"], "cannot read"),
    (["{d}/nothing.png", "--mask", "{d}/mask.png"], "no such file"),
    (["{d}/photo.png", "--mask", "{d}/small.png"], "sizes must match"),
    (["{d}/photo.png", "--mask", "{d}/empty.png"], "mask is empty"),
    (["{d}/photo.png", "--mask", "{d}/full.png"], "whole image"),
    (["{d}/photo.png"], "exactly one foreground hint"),
    (["{d}/photo.png", "--mask", "{d}/mask.png", "--box", "1,1,5,5"], "exactly one foreground hint"),
    (["{d}/photo.png", "--box", "500,500,600,600"], "outside"),
    (["--example", "unicorn"], "unknown example"),
    (["--example", "coffee", "--labels", "{d}/mask.png"], "--example brings its own image and box"),
])
def test_cli_errors(inputs, tmp_path, args, words):
    proc = run("split", *[a.format(d=inputs) for a in args], "-o", tmp_path / "x.ora")
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(error_lines(proc)) == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing left behind


def test_bad_box_syntax(inputs, tmp_path):
    proc = run("split", inputs / "photo.png", "--box", "1,2,3", "-o", tmp_path / "x.ora")
    assert proc.returncode == 2 and "x0,y0,x1,y1" in proc.stderr
    reversed_box = run("split", inputs / "photo.png", "--box", "160,140,40,20", "-o", tmp_path / "x.ora")
    assert reversed_box.returncode == 2 and "x0 < x1 and y0 < y1" in reversed_box.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_box_partly_outside_the_image_is_clipped_and_said_so(inputs, tmp_path):
    proc = run("split", inputs / "photo.png", "--box=-30,20,160,400", "-o", tmp_path / "x.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert "note: box -30,20,160,400 reaches past the 200x160 image: clipped to 0,20,160,160" in proc.stderr
    spaced = run("split", inputs / "photo.png", "--box", "-30,20,160,400", "-o", tmp_path / "y.ora", "--no-png")
    assert spaced.returncode == 0, spaced.stderr  # not "expected one argument"
    assert "clipped to 0,20,160,160" in spaced.stderr


def test_an_output_of_another_format_is_refused_not_renamed(inputs, tmp_path):
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / "x.png")
    assert proc.returncode == 2 and "is not an .ora or .psd file" in proc.stderr
    assert str(tmp_path / "x.ora") in proc.stderr
    assert "x_foreground.png" in proc.stderr and "x_object1.png" in proc.stderr  # the PNGs of a split, of --labels
    assert list(tmp_path.iterdir()) == []
    plain = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / "layers", "--no-png")
    assert plain.returncode == 0 and (tmp_path / "layers.ora").is_file()  # no suffix: .ora is added
    for bare in (".psd", ".ORA"):  # an extension alone is not a hidden file named ".psd.ora"
        proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / bare)
        assert proc.returncode == 2 and "has no name before its extension" in proc.stderr
        assert str(tmp_path / f"layers{bare}") in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.ora"]


def test_masks_saved_as_editors_and_scripts_save_them_select_what_was_painted(inputs, tmp_path):
    """A red selection on black, a black-and-white mask with the opaque alpha an editor adds, and a 0/1 array saved
    as is: each splits as the white-on-black mask does (io.images.load_mask's rules), not as 0.3, all or nothing."""
    white = np.asarray(Image.open(inputs / "mask.png").convert("L"))
    red = np.zeros((*white.shape, 3), np.uint8)
    red[..., 0] = white
    Image.fromarray(red).save(tmp_path / "red.png")
    Image.fromarray(np.dstack([white, np.full_like(white, 255)])).save(tmp_path / "opaque.png")
    Image.fromarray((white > 127).astype(np.uint8)).save(tmp_path / "ones.png")
    Image.fromarray(np.where(white > 127, 255, 0).astype(np.uint8)).save(tmp_path / "hard.png")

    def alpha(mask) -> np.ndarray:
        proc = run("split", inputs / "photo.png", "--mask", mask, "-o", tmp_path / "out.ora", "--no-png")
        assert proc.returncode == 0, (mask, proc.stderr)
        return read_ora(tmp_path / "out.ora")[0][0].pixels[..., 3]

    painted, hard = alpha(inputs / "mask.png"), alpha(tmp_path / "hard.png")
    assert painted.mean() > 0.1
    for name, reference in (("red", painted), ("opaque", painted), ("ones", hard)):
        assert np.array_equal(alpha(tmp_path / f"{name}.png"), reference), name


def test_version_and_the_split_help_shows_only_the_options_it_uses():
    from layering_protocol import RELEASE

    assert run("--version").stdout.strip() == f"layeringdiff {RELEASE}"
    help_text = run("split", "--help").stdout
    assert "--models-dir" in help_text and "--fill" in help_text
    for unused in ("--device", "--dtype", "--cpu-offload", "--vae-tiling"):
        assert unused not in help_text, unused
    assert "--device" in run("generate", "--help").stdout


def test_prepare_says_which_step_and_when_nothing_needed_compiling():
    first = run("prepare")  # compiles what is not on disk yet (nothing, after the earlier tests)
    again = run("prepare")
    assert first.returncode == 0 and again.returncode == 0
    assert re.search(r"compiling the image kernels 1/\d+: importing pymatting", again.stdout)
    assert "30 s to 3 min" in again.stdout
    assert again.stdout.strip().splitlines()[-1].startswith(
        "image kernels ready: nothing needed compiling, all were on disk already")


def test_missing_output_folder(inputs, tmp_path):
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / "no" / "x.ora")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_an_output_ending_in_a_slash_and_a_second_output_are_refused(inputs, tmp_path):
    """-o newdir/ (no such folder) wrote ./newdir.ora; -o a.ora -o b.psd wrote b.psd only, without a word."""
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", "newdir/", cwd=tmp_path)
    assert proc.returncode == 2 and "names a folder" in proc.stderr and "newdir/layers.ora" in proc.stderr
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", "a.ora", "-o", "b.psd",
               cwd=tmp_path)
    assert proc.returncode == 2 and "-o is given twice (a.ora, b.psd)" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def error_lines(proc) -> list[str]:
    """stderr without the progress lines ("  5.0% trimap (0.1s)") that came before the failure."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not re.match(r"\s*\d+\.\d%", line)]


def one_line_failure(proc, words):
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def unwritable_folder(tmp_path):
    """A folder this process cannot create files in (root ignores permissions: /proc then)."""
    if os.geteuid() == 0:
        return Path("/proc")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


@pytest.mark.parametrize("case,words", [
    ("output is a folder", "is a folder"),
    ("parent is a file", "is a file, not a folder"),
    ("unwritable", "creating a file there failed"),
    ("a PNG name is a folder", "x_foreground.png' is a folder"),
    ("no such folder", "does not exist"),
])
def test_every_output_is_checked_before_anything_is_written(inputs, tmp_path, case, words):
    out = tmp_path / "x.ora"
    if case == "output is a folder":
        out = tmp_path / "folder.ora"
        out.mkdir()
    elif case == "parent is a file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "x.ora"
    elif case == "unwritable":
        out = unwritable_folder(tmp_path) / "x.ora"
    elif case == "a PNG name is a folder":
        (tmp_path / "x_foreground.png").mkdir()
    else:
        out = tmp_path / "none" / "x.ora"
    before = sorted(tmp_path.rglob("*"))
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", out)
    one_line_failure(proc, words)
    assert sorted(tmp_path.rglob("*")) == before  # no .ora written anyway, no *.tmp or part files


@pytest.mark.parametrize("args,words", [
    (["--box", "inf,0,50,50"], "finite"),
    (["--box", "nan,0,50,50"], "finite"),
    (["--box", "1e300,0,50,50"], "finite"),
    (["--mask", "{d}/mask.png", "--band", "100000"], "band must be an integer in 1..500"),
    (["--mask", "{d}/mask.png", "--band", "0"], "band must be an integer in 1..500"),
    (["--mask", "{d}/mask.png", "--band", "-5"], "band must be an integer in 1..500"),
    (["--mask", "{d}/mask.png", "--band", "wide"], "invalid int value"),
    (["--mask", "{d}/mask.png", "--max-pixels", "1000"], "more than the limit of 1000"),
    (["--mask", "{d}/mask.png", "--alpha-mode", "magic"], "invalid choice"),
    (["--mask", "{d}/mask.png", "--max-memory", "50M"], "more than the 50 MB allowed by --max-memory"),
    (["--mask", "{d}/mask.png", "--max-memory", "lots"], "--max-memory 'lots' is not a size"),
    # accepted and ignored before
    (["--mask", "{d}/mask.png", "--alpha-mode", "mask", "--band", "300"], "--band does not apply to --alpha-mode mask"),
    (["--mask", "{d}/mask.png", "--alpha-mode", "mask", "--matting", "vitmatte"],
     "--matting does not apply to --alpha-mode mask"),
    (["--mask", "{d}/mask.png", "--model", "vitmate={d}"], "--model takes NAME=FOLDER"),
    (["--mask", "{d}/mask.png", "--models-dir", "{d}/no-such-folder"], "no-such-folder does not exist"),
])
def test_bad_options_are_one_line(inputs, tmp_path, args, words):
    proc = run("split", inputs / "photo.png", *[a.format(d=inputs) for a in args], "-o", tmp_path / "x.ora")
    one_line_failure(proc, words)
    assert list(tmp_path.iterdir()) == []


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    """35 KB of PNG that would decode to 17000x17000 pixels (gigabytes): refused at the default limit, the
    server's, before decoding."""
    Image.new("1", (17000, 17000)).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    limit = 1 << 31  # address space: decoding would need more than this

    def small_memory():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", str(tmp_path / "bomb.png"), "--box",
                           "1,1,50,50", "-o", str(tmp_path / "b.ora")], capture_output=True, text=True, timeout=300,
                          preexec_fn=small_memory)
    one_line_failure(proc, "17000x17000 = 289000000 pixels, more than the limit of 268435456")
    assert not (tmp_path / "b.ora").exists()


def test_sixteen_bit_inputs_split_as_they_look(inputs, tmp_path):
    photo = np.asarray(Image.open(inputs / "photo.png").convert("L"), np.float32) / 255
    Image.fromarray((photo * 65535 + 0.5).astype(np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16")
    proc = run("split", tmp_path / "grey16.png", "--mask", inputs / "mask.png", "-o", tmp_path / "g.ora", "-q")
    assert proc.returncode == 0, proc.stderr
    layers, w, h = read_ora(tmp_path / "g.ora")
    original = layers[2].pixels[..., 0]
    assert np.abs(original - photo).max() <= 1 / 255 + 1e-6  # not clipped to white


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT as a terminal's Ctrl+C finds it: a test run started in the background (setsid, `&` in a script)
    passes SIGINT on ignored, and then Python never raises KeyboardInterrupt (seen as a failure of this test)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_ctrl_c_leaves_no_partial_files(tmp_path, stop):
    """Nor does `timeout` or `kill` (SIGTERM), nor a terminal closed under it (SIGHUP): both ended the process at
    once, leaving a hidden temporary file for each output."""
    # the coffee photo at 4x: seconds of work are left after the first stage line, so the interrupt lands inside
    # the split or the writing even on a loaded machine (at 1x a busy CI machine once saw the split finish first)
    from layeringdiff.examples import example

    photo, box = example("coffee")
    big = tmp_path / "in" / "coffee.png"
    big.parent.mkdir()
    save_png(big, np.repeat(np.repeat(photo, 4, axis=0), 4, axis=1))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "layeringdiff", "split", str(big), "--box",
                             ",".join(str(4 * v) for v in box), "-o", str(out / "c.ora")],
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    for line in proc.stderr:
        if "trimap" in line or "matting" in line:
            break
    proc.send_signal(getattr(signal, stop))
    assert proc.wait(120) == 128 + getattr(signal, stop)  # 130 for Ctrl+C, as a shell says
    assert list(out.iterdir()) == []
    assert ("interrupted" if stop == "SIGINT" else f"stopped by {stop}") in proc.stderr.read()


def test_the_command_ends_without_the_interpreters_teardown():
    """Finalisers at exit can spin forever in numba's TBB pool (seen after `evaluate`): the command flushes what it
    printed and ends at once, so no finaliser (nor atexit handler) runs."""
    code = ("import atexit, sys; atexit.register(lambda: print('TEARDOWN RAN')); "
            "sys.argv = ['layeringdiff', 'examples']; from layeringdiff.cli import run; run()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "coffee" in proc.stdout and "TEARDOWN RAN" not in proc.stdout


def test_training_keeps_the_normal_exit(monkeypatch):
    """accelerate and the process group clean up at exit: `train` leaves through sys.exit."""
    from layeringdiff import cli

    monkeypatch.setattr(cli, "main", lambda: 0)
    monkeypatch.setattr(cli.os, "_exit", lambda code: pytest.fail("os._exit after training"))
    monkeypatch.setattr(sys, "argv", ["layeringdiff", "train", "fbdd"])
    with pytest.raises(SystemExit) as stop:
        cli.run()
    assert stop.value.code == 0


def run_with_closed(stream: str, *args):
    """The CLI with stdout (`>&-`) or stderr (`2>&-`) closed by the shell, the other one captured."""
    redirect = {"stdout": ">&-", "stderr": "2>&-"}[stream]
    return subprocess.run(["sh", "-c", f'exec "$0" -m layeringdiff "$@" {redirect}', sys.executable, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_a_closed_stdout_drops_the_list_and_keeps_the_outputs(inputs, tmp_path):
    (tmp_path / "x.ora").write_text("an older result")  # replaced, as any existing output that is not an input
    proc = run_with_closed("stdout", "split", "-q", inputs / "photo.png", "--mask", inputs / "mask.png", "-o",
                           tmp_path / "x.ora")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ora", "x_alpha.png", "x_background.png",
                                                          "x_foreground.png"]
    check_ora_recomposites(tmp_path / "x.ora", inputs / "photo.png")


def test_a_closed_stderr_is_as_if_it_were_open(inputs, tmp_path):
    proc = run_with_closed("stderr", "split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o",
                           tmp_path / "x.ora")  # progress and summary on, with nowhere to go
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [str(tmp_path / n) for n in ("x.ora", "x_foreground.png", "x_background.png",
                                                                      "x_alpha.png")]  # nothing else leaked here
    check_ora_recomposites(tmp_path / "x.ora", inputs / "photo.png")


def test_a_list_of_outputs_that_cannot_be_written_fails_the_split_and_keeps_no_output(inputs, tmp_path):
    """The paths on stdout are part of the result: on a full disk the command fails, and the outputs are as they
    were (the older .ora back, no new PNG, no temporary file)."""
    (tmp_path / "x.ora").write_text("an older result")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", "-q", str(inputs / "photo.png"),
                               "--mask", str(inputs / "mask.png"), "-o", str(tmp_path / "x.ora")],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    one_line_failure(proc, "cannot write the list of output files to stdout (No space left on device): no output "
                           "file was kept")
    assert [p.name for p in tmp_path.iterdir()] == ["x.ora"]
    assert (tmp_path / "x.ora").read_text() == "an older result"


@pytest.mark.parametrize(("output", "words"), [
    ("-", "-o - (standard output) cannot take a layered file"),
    ("/dev/null", "output '/dev/null' is not a regular file (a device or a pipe)"),
])
def test_an_output_that_is_no_file_name_is_refused(inputs, output, words):
    """-o /dev/null wrote /dev/null.ora and four PNGs into /dev; -o - a file named '-.ora'."""
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", output, "-q")
    one_line_failure(proc, words)
    assert not Path("/dev/null.ora").exists() and not Path("-.ora").exists()


def test_a_reader_that_leaves_early_keeps_the_outputs(inputs, tmp_path):
    """`$(layeringdiff split ... | head -n1)`: head leaves after the first path, and the split, still printing the
    others, meets a closed pipe. The reader took what it wanted: the files stay (they were taken back, 3 runs in 10)."""
    read, write = os.pipe()
    os.close(read)  # every write to stdout fails at once (EPIPE), as after head has left
    try:
        proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", "-q", str(inputs / "photo.png"),
                               "--mask", str(inputs / "mask.png"), "-o", str(tmp_path / "x.ora")],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ora", "x_alpha.png", "x_background.png",
                                                          "x_foreground.png"]
    check_ora_recomposites(tmp_path / "x.ora", inputs / "photo.png")


@pytest.mark.parametrize("case", ["image named like a PNG output", "mask named like a PNG output", "by ../",
                                  "through a link", "image named like the .ora"])
def test_an_output_that_is_an_input_is_refused_before_any_work(inputs, tmp_path, case):
    (tmp_path / "sub").mkdir()
    image, mask, out = tmp_path / "in.png", tmp_path / "m.png", tmp_path / "x.ora"
    if case == "image named like a PNG output":
        image, words = tmp_path / "x_background.png", "output '{o}_background.png' (a PNG written beside -o"
    elif case == "mask named like a PNG output":
        mask, words = tmp_path / "x_alpha.png", "output '{o}_alpha.png' (a PNG written beside -o"
    elif case == "by ../":
        image, out = tmp_path / "x_foreground.png", tmp_path / "sub" / ".." / "x.ora"
        words = "output '{o}_foreground.png'"
    elif case == "through a link":
        image = tmp_path / "sub" / "link.png"
        image.symlink_to(tmp_path / "x_alpha.png")
        (tmp_path / "x_alpha.png").write_bytes((inputs / "photo.png").read_bytes())
        words = "output '{o}_alpha.png'"
    else:
        image, words = tmp_path / "x.ora", "output '{o}.ora' is the IMAGE file"  # a PNG by its content
    if not image.exists():
        image.write_bytes((inputs / "photo.png").read_bytes())
    mask.write_bytes((inputs / "mask.png").read_bytes())
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    proc = run("split", image, "--mask", mask, "-o", out)
    one_line_failure(proc, words.format(o=str(out)[:-4]))
    assert "choose another -o" in proc.stderr and ("--mask" if "mask" in case else "IMAGE") in proc.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # inputs as they were


def test_a_png_too_large_for_memory_is_refused_from_its_header(tmp_path):
    """0.75 MB of PNG that decodes to 16000x16000 pixels, under the pixel limit: its split would need about 20 GB.
    Under a 2 GiB address-space limit it is refused from the header, quickly, without decoding it (which alone
    would need 8 GB: the limit would turn it into a MemoryError, not this line)."""
    Image.new("RGB", (16000, 16000), (90, 120, 200)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 1_000_000
    limit = 1 << 31

    def small_memory():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", str(tmp_path / "big.png"), "--box",
                           "100,100,900,900", "-o", str(tmp_path / "b.ora")], capture_output=True, text=True,
                          timeout=300, preexec_fn=small_memory)
    one_line_failure(proc, f"'{tmp_path / 'big.png'}' is 16000x16000 (732 MB decoded): its split needs about ")
    assert re.search(r"needs about \d+\.\d GB of memory, more than the [\d.]+ [MG]B left under this process's "
                     r"address-space limit \(ulimit -v\) \(scale it down, or raise --max-memory", proc.stderr)
    assert time.monotonic() - start < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_a_picture_of_several_frames_says_only_the_first_is_split(tmp_path):
    """An animated GIF or a multi-page TIFF: the first frame or page is split, and a note says so (it was silent)."""
    first = (np.random.default_rng(0).random((48, 64, 3)) * 60).astype(np.uint8)
    first[12:36, 16:48] = (230, 40, 30)  # a red card on a dark ground
    second = np.full_like(first, 128)
    Image.fromarray(first).save(tmp_path / "pages.tif", save_all=True, append_images=[Image.fromarray(second)])
    proc = run("split", tmp_path / "pages.tif", "--box", "10,6,54,42", "-o", tmp_path / "p.ora", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert f"note: IMAGE '{tmp_path / 'pages.tif'}' holds 2 frames or pages: only the first is split" in proc.stderr
    layers, w, h = read_ora(tmp_path / "p.ora")
    assert np.abs(layers[-1].pixels[..., :3] * 255 - first).max() <= 0.5  # the original is the first page
    Image.fromarray(first).save(tmp_path / "one.tif")
    proc = run("split", tmp_path / "one.tif", "--box", "10,6,54,42", "-o", tmp_path / "q.psd", "--no-png")
    assert proc.returncode == 0 and "frames or pages" not in proc.stderr, proc.stderr
    # a layered PSD's frames are its layers, and its composite is what is split: one picture, no note
    proc = run("split", tmp_path / "q.psd", "--box", "10,6,54,42", "-o", tmp_path / "r.ora", "--no-png")
    assert proc.returncode == 0 and "frames or pages" not in proc.stderr, proc.stderr


def test_serve_refuses_a_time_limit_that_is_no_time():
    for value in ("0", "-3", "nan"):
        out = run("serve", "--max-job-seconds", value)
        assert out.returncode == 2 and "--max-job-seconds must be more than 0" in out.stderr, out.stderr
        assert "READY" not in out.stdout
    for port in ("99999", "-1"):  # libzmq took them as other ports, and READY named the one asked for
        out = run("serve", "--port", port)
        assert out.returncode == 2 and "argument --port: " in out.stderr and "READY" not in out.stdout, out.stderr


@pytest.mark.parametrize("args,words", [
    (["dataset", "-o", "{d}/o", "--count", "-3"], "argument --count: must be at least 1, got -3"),
    (["dataset", "-o", "{d}/o", "--count", "2", "--size", "0"], "argument --size: must be at least 8, got 0"),
    (["evaluate", "-o", "{d}/o", "--count", "-2"], "argument --count: must be at least 1"),
    (["train", "hfa", "--source", "classical", "-o", "{d}/o", "--batch-size", "0"], "argument --batch-size: must be"),
    (["dataset", "-o", "{d}/o", "--count", "2", "--foregrounds", "{d}/fg"], "must have an alpha channel"),
])
def test_the_data_commands_refuse_numbers_that_are_no_count_in_one_line(tmp_path, args, words):
    """Each was an 'internal error ... please report it' (exit 1)."""
    (tmp_path / "fg").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "fg" / "opaque.png")  # a foreground without alpha
    out = run(*[a.format(d=tmp_path) for a in args])
    assert out.returncode == 2 and words in out.stderr and "internal error" not in out.stderr, out.stderr

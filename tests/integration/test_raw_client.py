"""examples/raw_client.py, a client written from PROTOCOL.md with pyzmq, msgpack, numpy and Pillow only, run as a
subprocess against the real backend."""

import ast
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from layering_protocol import ErrorCode, Image, ProtocolError, Split, decode, encode
from layeringdiff.examples import synthetic_composite
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "raw_client.py"
THIRD_PARTY = {"zmq", "msgpack", "numpy", "PIL"}


def write_inputs(folder: Path, size: int = 64, mask_height: int | None = None) -> tuple[Path, Path, np.ndarray]:
    """An 8-bit RGB photo composite and its selection (L, 255 = selected) as PNGs; returns the paths and C in 0..1."""
    comp, alpha, _, _ = synthetic_composite(size, size, seed=0)
    c8 = np.round(comp * 255).astype(np.uint8)
    image, mask = folder / "image.png", folder / "mask.png"
    PILImage.fromarray(c8, "RGB").save(image)
    selected = np.where(alpha > 0.5, 255, 0).astype(np.uint8)
    PILImage.fromarray(selected[:mask_height] if mask_height else selected, "L").save(mask)
    return image, mask, c8.astype(np.float64) / 255


def run_client(endpoint: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), endpoint, *args], capture_output=True, text=True,
                          timeout=timeout)


def read_png(path: Path) -> np.ndarray:
    return np.asarray(PILImage.open(path)).astype(np.float64) / 255


def check_layers(out: Path, comp: np.ndarray) -> None:
    """The PNGs recompose the input: a F + (1 - a) B = C within 2/255 wherever a < 1 (F and B are 8-bit)."""
    fg, bg, alpha = read_png(out / "foreground.png"), read_png(out / "background.png"), read_png(out / "alpha.png")
    assert fg.shape == bg.shape == comp.shape[:2] + (4,) and alpha.shape == comp.shape[:2]
    assert np.array_equal(fg[..., 3], alpha)  # an opaque layer: the foreground's alpha is the matte
    assert np.all(bg[..., 3] == 1.0)
    assert 0 < alpha.mean() < 1
    a = alpha[..., None]
    recomposed = a * fg[..., :3] + (1 - a) * bg[..., :3]
    visible = alpha < 1.0
    assert np.abs(recomposed - comp)[visible].max() <= 2 / 255 + 1e-9


@pytest.mark.parametrize("dtype,order,hello", [("u8", "RGBA", True), ("f16", "BGRA", False)])
def test_raw_client_splits_and_the_layers_recompose_the_input(backend, tmp_path, dtype, order, hello):
    image, mask, comp = write_inputs(tmp_path)
    out = tmp_path / "out"
    proc = run_client(backend.endpoint, str(image), "--mask", str(mask), "-o", str(out), "--dtype", dtype,
                      "--order", order, *([] if hello else ["--no-hello"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("server: layeringdiff ") for line in lines) == hello, proc.stdout
    accepted = next(i for i, line in enumerate(lines) if line.startswith("accepted"))
    wrote = next(i for i, line in enumerate(lines) if line.startswith("wrote "))
    assert any(line.startswith("progress ") for line in lines[accepted:wrote]), proc.stdout
    check_layers(out, comp)


def test_a_mask_of_another_size_is_refused_before_accepted(backend, tmp_path):
    image, mask, _ = write_inputs(tmp_path, mask_height=32)
    proc = run_client(backend.endpoint, str(image), "--mask", str(mask), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error bad_field: 'split.mask' is 64x32, 'split.image' is 64x64: sizes must match" in proc.stdout
    assert "accepted" not in proc.stdout and not (tmp_path / "out").exists()


def test_the_codec_refuses_a_mask_of_another_size():
    def u8(w: int, h: int, order: str) -> Image:
        return Image(w, h, order, "u8", bytes(w * h * (4 if order == "RGBA" else 1)))

    for message in (Split(u8(8, 8, "RGBA"), mask=u8(8, 4, "L")), Split(u8(8, 8, "RGBA"), mask=u8(4, 8, "L"))):
        with pytest.raises(ProtocolError) as info:
            decode(encode(message))
        assert info.value.code == ErrorCode.BAD_FIELD and "sizes must match" in info.value.text
    assert decode(encode(Split(u8(8, 8, "RGBA"), mask=u8(8, 8, "L")))).message.mask.height == 8


def test_ctrl_c_cancels_the_job(backend, tmp_path):
    image, mask, _ = write_inputs(tmp_path, size=384)  # seconds of work on any machine: still running at the cancel
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), backend.endpoint, str(image), "--mask", str(mask),
                             "-o", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("accepted") for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen.append(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen) + rest
    assert proc.returncode == 130, output + err
    assert "cancelling" in output and output.rstrip().endswith("cancelled"), output
    assert not (tmp_path / "out").exists()


def test_raw_client_with_curve_keys(secure_backend, curve_keys, tmp_path):
    image, mask, comp = write_inputs(tmp_path)
    out = tmp_path / "out"
    keys = ["--server-key", str(curve_keys / "server.key"),
            "--client-key", str(curve_keys / "secrets" / "alice.key_secret")]
    proc = run_client(secure_backend.local, str(image), "--mask", str(mask), "-o", str(out), *keys)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_layers(out, comp)
    # the server's key as its 40 characters (the READY line's), and a key the server does not know: no answer at all
    stranger = tmp_path / "stranger.key_secret"
    public, secret = zmq.curve_keypair()
    stranger.write_text(f'curve\n    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n')
    proc = run_client(secure_backend.local, str(image), "--mask", str(mask), "-o", str(out / "no"), "--timeout", "3",
                      "--server-key", secure_backend.ready["server_key"], "--client-key", str(stranger))
    assert proc.returncode == 2 and "no answer to hello" in proc.stdout, proc.stdout + proc.stderr
    # a key's text may begin with '-' (Z85 has it: 1 key in 85): still the key, not an unknown option
    dashed = next(k.decode() for k in iter(lambda: zmq.curve_keypair()[0], None) if k.startswith(b"-"))
    proc = run_client(secure_backend.local, str(image), "--mask", str(mask), "-o", str(out / "no"), "--timeout", "1",
                      "--server-key", dashed, "--client-key", str(stranger))
    assert proc.returncode == 2 and "no answer to hello" in proc.stdout, proc.stdout + proc.stderr


def test_the_example_imports_nothing_of_this_project():
    tree = ast.parse(EXAMPLE.read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            modules.add(node.module.split(".")[0])
    assert "__import__" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "importlib" not in modules
    assert modules - set(sys.stdlib_module_names) == THIRD_PARTY, modules

import json

import pytest
from layeringdiff_krita.backend_process import parse_ready
from layeringdiff_krita.pixels import (
    MAX_OBJECTS,
    UnsupportedFormat,
    labels_from_masks,
    layer_format,
    layer_image,
    selection_image,
    selection_is_empty,
    selection_is_full,
    selects_only_transparent,
)
from layeringdiff_krita.settings import ENV_ENDPOINT, ENV_PYTHON, Settings


@pytest.mark.parametrize("depth,expected", [("U8", ("u8", "BGRA")), ("U16", ("u16", "BGRA")),
                                            ("F16", ("f16", "RGBA")), ("F32", ("f32", "RGBA"))])
def test_layer_formats(depth, expected):
    assert layer_format("RGBA", depth) == expected
    img = layer_image(bytes(2 * 3 * {"U8": 4, "U16": 8, "F16": 8, "F32": 16}[depth]), 2, 3, "RGBA", depth)
    assert img.expected_nbytes == len(img.data)


@pytest.mark.parametrize("model,depth,words", [("CMYKA", "U8", "RGB layers"), ("GRAYA", "U16", "Convert"),
                                               ("RGBA", "U32", "unsupported channel depth")])
def test_unsupported_colour_models(model, depth, words):
    with pytest.raises(UnsupportedFormat, match=words):
        layer_format(model, depth)


def test_selection_helpers():
    assert selection_is_empty(bytes(10)) and not selection_is_empty(b"\0\1")
    assert selection_is_full(b"\xff" * 4) and not selection_is_full(b"\xff\xfe")
    img = selection_image(bytes(6), 3, 2)
    assert (img.order, img.dtype, img.expected_nbytes) == ("L", "u8", 6)


@pytest.mark.parametrize("depth,alpha", [("U8", b"\x01"), ("U16", b"\x00\x01"), ("F16", b"\x00\x3c"),
                                         ("F32", b"\x00\x00\x00\x3f")])
def test_a_selection_that_touches_no_painted_pixel_is_told_apart_in_every_depth(depth, alpha):
    size = len(alpha)
    pixel = lambda a: b"\xff" * 3 * size + a  # noqa: E731  bright colour, its alpha as given
    data = pixel(bytes(size)) * 2 + pixel(alpha) + pixel(bytes(size))  # 4 pixels: only the third is painted
    image = layer_image(data, 2, 2, "RGBA", depth)
    assert selects_only_transparent(b"\xff\x80\x00\xff", image)  # all but the painted pixel
    assert not selects_only_transparent(b"\x00\x00\x01\x00", image)  # a faint selection over it is enough
    assert selects_only_transparent(bytes(4), image)


def test_settings_round_trip_and_bad_json(monkeypatch):
    monkeypatch.delenv(ENV_ENDPOINT, raising=False)
    monkeypatch.delenv(ENV_PYTHON, raising=False)
    s = Settings.from_json(json.dumps({"autostart": False, "python": "/opt/py", "unknown": 1}))
    assert s.autostart is False and s.python == "/opt/py"
    assert Settings.from_json(s.to_json()) == s
    assert Settings.from_json("{not json") == Settings()
    assert Settings.from_json("[1, 2]") == Settings()
    assert s.backend_command()[:3] == ["/opt/py", "-m", "layeringdiff"]
    assert "serve" in s.backend_command() and "--port" in s.backend_command()


def test_the_models_folder_of_older_settings_and_a_backend_command(monkeypatch):
    monkeypatch.delenv(ENV_PYTHON, raising=False)
    old = Settings.from_json(json.dumps({"model_dirs": {"all": "/srv/models", "sam": "/opt/sam"}}))  # plugin 0.1
    assert old.models_dir == "/srv/models" and old.model_dirs == {"sam": "/opt/sam"}
    command = old.backend_command()
    assert command[command.index("--models-dir") + 1] == "/srv/models" and "--model=sam=/opt/sam" in command
    own = Settings().backend_command("/home/a/krita/layeringdiff/env/bin/python", "/home/a/krita/layeringdiff/models")
    assert own[:3] == ["/home/a/krita/layeringdiff/env/bin/python", "-m", "layeringdiff"]
    assert own[own.index("--models-dir") + 1] == "/home/a/krita/layeringdiff/models"
    # Advanced > Existing Python also takes the backend's own command
    assert Settings(python="/opt/ld/bin/layeringdiff").backend_command()[:2] == ["/opt/ld/bin/layeringdiff", "serve"]


def test_cpu_offload_starts_the_docker_s_backend_with_it(monkeypatch, tmp_path):
    """The backend's own parser reads the command the docker builds: the model config it gets has CPU offload."""
    from layeringdiff.cli import build_parser, model_config

    monkeypatch.delenv(ENV_PYTHON, raising=False)
    for on in (False, True):
        command = Settings(cpu_offload=on).backend_command("/env/bin/python", str(tmp_path))
        assert ("--cpu-offload" in command) == on
        args = build_parser().parse_args(command[3:])
        assert args.command == "serve" and model_config(args).cpu_offload is on
    assert Settings.from_json(Settings(cpu_offload=True).to_json()).cpu_offload


def test_settings_environment_overrides(monkeypatch):
    monkeypatch.setenv(ENV_ENDPOINT, "tcp://127.0.0.1:6000")
    monkeypatch.setenv(ENV_PYTHON, "/venv/bin/python")
    s = Settings.from_json("")
    assert s.autostart is False and s.endpoint == "tcp://127.0.0.1:6000" and s.python == "/venv/bin/python"


def test_parse_ready():
    assert parse_ready("READY tcp://127.0.0.1:5555 protocol=1 version=0.1.0") == "tcp://127.0.0.1:5555"
    assert parse_ready("2026 INFO something") is None
    assert parse_ready("READY") is None


def test_backend_output_that_is_not_ascii_or_not_utf8_keeps_being_read(tmp_path):
    """The reader threads survive any bytes (seen in Krita 5.3/6 on Debian, whose embedded Python reads the
    C locale's ASCII): the READY line after them is still found and the log keeps them readable."""
    import sys
    import time

    from layeringdiff_krita.backend_process import BackendProcess

    script = ("import sys, time; out = sys.stdout.buffer; out.write('loading \\u2588\\u2588 50%\\n'.encode()); "
              "out.write(b'\\xff\\xfe not utf-8\\n'); out.write(b'READY tcp://127.0.0.1:5999 protocol=1\\n'); "
              "out.flush(); time.sleep(5)")
    proc = BackendProcess([sys.executable, "-c", script])
    assert proc.start()
    deadline = time.monotonic() + 10
    while proc.endpoint is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.stop()
    assert proc.endpoint == "tcp://127.0.0.1:5999"
    assert "\u2588\u2588 50%" in proc.log_tail() and "not utf-8" in proc.log_tail()


def test_stopping_a_stopped_backend_does_not_wait_out_its_timeout():
    """Restart backend on a backend stopped by SIGSTOP (a debugger, Ctrl+Z): it is let go on first, so SIGTERM ends
    it at once, not after the wait (Krita's window froze 5 s)."""
    import os
    import signal
    import sys
    import time

    from layeringdiff_krita.backend_process import BackendProcess

    script = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); print('up', "
              "flush=True); time.sleep(60)")  # its own handler, as the backend's: a stopped process cannot run it
    proc = BackendProcess([sys.executable, "-c", script])
    assert proc.start()
    deadline = time.monotonic() + 10
    while "up" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.proc.pid, signal.SIGSTOP)
    start = time.monotonic()
    proc.stop(timeout=10)
    assert time.monotonic() - start < 2.0 and proc.proc.returncode == 3  # its handler ran: not killed after 10 s


def test_a_backend_that_exited_is_reported_with_its_last_error_line(monkeypatch):
    """The error a backend prints as it exits is in the log the docker shows, even when its reader thread has not
    run yet (under load the docker said only 'exited (code 3)' with the lines before)."""
    import sys
    import time

    from layeringdiff_krita import backend_process

    read = backend_process.BackendProcess._read

    def late(self, stream, is_stdout):  # a reader thread descheduled past the exit
        time.sleep(0.4)
        read(self, stream, is_stdout)

    monkeypatch.setattr(backend_process.BackendProcess, "_read", late)
    proc = backend_process.BackendProcess([sys.executable, "-c", "import sys; print('boom: no kernels', "
                                           "file=sys.stderr); sys.exit(3)"])
    assert proc.start()
    assert proc.proc is not None and proc.proc.wait(10) == 3
    assert proc.exit_code() == 3 and "boom: no kernels" in proc.log_tail()


def test_labels_from_masks_front_first_at_least_half_selected():
    front = bytes([255, 255, 0, 0, 128, 127, 0])
    back = bytes([0, 255, 255, 0, 0, 255, 128])
    assert list(labels_from_masks([front, back])) == [1, 1, 2, 0, 1, 2, 2]
    assert list(labels_from_masks([back, front])) == [2, 1, 1, 0, 2, 1, 1]
    many = [bytes([0] * k + [255] + [0] * (MAX_OBJECTS - 1 - k)) for k in range(MAX_OBJECTS)]
    assert list(labels_from_masks(many)) == list(range(1, MAX_OBJECTS + 1))
    assert labels_from_masks([bytes(3)]) == bytes(3)  # nothing selected: no object anywhere
    with pytest.raises(ValueError, match="1 to 255 masks, got 256"):
        labels_from_masks(many + [bytes(MAX_OBJECTS)])
    with pytest.raises(ValueError, match="differ in size"):
        labels_from_masks([bytes(3), bytes(4)])


@pytest.mark.parametrize("mask,name", [("cat", "cat"), (" red vase ", "red vase"), ("Selection Mask", "object"),
                                       ("selection mask 3", "object"), ("Local Selection", "object"), ("", "object"),
                                       ("Selection of the cat", "Selection of the cat")])
def test_an_objects_name_is_its_masks_unless_krita_named_it(mask, name):
    from layeringdiff_krita.naming import object_name, stack_names

    assert object_name(mask) == name
    assert stack_names(["cat", "object"]) == (["1 cat", "2 object"], "background 2")

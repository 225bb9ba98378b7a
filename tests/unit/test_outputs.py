"""The CLI's output files: all new, or all as they were."""

import os
from pathlib import Path

import pytest
from layeringdiff.errors import InputError
from layeringdiff.io.outputs import Outputs


def test_a_failed_rename_puts_back_the_files_that_were_there(tmp_path, monkeypatch):
    targets = [tmp_path / "a.ora", tmp_path / "a_foreground.png", tmp_path / "a_alpha.png"]
    targets[0].write_text("old ora")
    targets[1].write_text("old foreground")
    real_replace = os.replace

    def failing(src, dst):
        if Path(dst) == targets[2] and ".part" in str(src):
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(InputError, match="No space left"):
        with Outputs(targets) as outputs:
            for target in targets:
                outputs.path(target).write_text("new")
    assert targets[0].read_text() == "old ora" and targets[1].read_text() == "old foreground"
    assert not targets[2].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ora", "a_foreground.png"]  # no temporary left


def test_all_new_files_when_every_rename_works(tmp_path):
    targets = [tmp_path / "b.ora", tmp_path / "b_alpha.png"]
    targets[0].write_text("old")
    with Outputs(targets) as outputs:
        for target in targets:
            outputs.path(target).write_text("new")
    assert [t.read_text() for t in targets] == ["new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.ora", "b_alpha.png"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_names_the_files_it_could_not_write(tmp_path, monkeypatch):
    # a write's ENOSPC names no file: the error said only "No space left on device"
    targets = [tmp_path / "c.ora", tmp_path / "c_alpha.png"]
    targets[0].write_text("old ora")
    full = tmp_path / "full"
    full.symlink_to("/dev/full")  # every write there fails as on a full disk, for real
    monkeypatch.setattr(Outputs, "_reserve", staticmethod(lambda target: full))
    with pytest.raises(InputError) as caught:
        with Outputs(targets[:1]) as outputs:
            with open(outputs.path(targets[0]), "wb") as f:
                f.write(b"x" * 65536)
                f.flush()
    assert str(caught.value) == f"cannot write {targets[0]}: No space left on device"
    assert caught.value.detail.startswith("free some space there, or write elsewhere with -o")
    assert targets[0].read_text() == "old ora"


def test_the_parts_a_killed_run_left_are_removed_by_the_next(tmp_path):
    # a kill -9 (or the out-of-memory killer) while writing leaves the writer's parts: the next run removes them
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a writer that is no more
    target = tmp_path / "c.ora"
    stale = tmp_path / f".c.{gone.pid}-0123abcd.part.ora"
    live = tmp_path / f".c.{os.getpid()}-89abcdef.part.ora"  # a run still writing: not ours to remove
    kept = [live, tmp_path / ".c.0123abcd.old.ora", tmp_path / f".cc.{gone.pid}-0123abcd.part.ora",
            tmp_path / f".c.{gone.pid}-0123abcd.part.png"]  # a replaced file's copy; another name; another file
    for path in [stale, *kept]:
        path.write_bytes(b"x" * 1000)
    with Outputs([target]) as outputs:
        assert outputs.path(target).name.startswith(f".c.{os.getpid()}-")
        outputs.path(target).write_text("new")
    assert target.read_text() == "new" and not stale.exists()
    assert all(path.exists() for path in kept)


@pytest.mark.parametrize("stem_bytes", [230, 250])
def test_a_long_name_that_fits_its_folder_is_written_and_one_that_does_not_is_named_so(tmp_path, stem_bytes):
    """The files written beside the target add a pid and .part: a valid 240-byte name was refused, blaming the
    folder. Their stem is cut to fit now; a name past the file system's limit is named as too long."""
    stem = "é" * (stem_bytes // 2)  # two bytes a character: cut between characters, never inside one
    target = tmp_path / f"{stem}.ora"
    (tmp_path / target.name).write_text("old")  # replaced: its copy aside has a cut name too
    with Outputs([target]) as outputs:
        assert len(outputs.path(target).name.encode()) <= 255
        outputs.path(target).write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]
    with pytest.raises(InputError) as too_long:
        with Outputs([tmp_path / ("y" * 300 + ".ora")]):
            pass
    assert "the name is too long for its folder's file system" in too_long.value.text

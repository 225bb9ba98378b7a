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

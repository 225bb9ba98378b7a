"""The CLI's progress bar on a terminal: one line redrawn in place, ended once, at the job's end."""

import io
import sys

from layeringdiff.cli import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_split_into_objects_redraws_one_line_and_ends_it_at_the_job_s_done(monkeypatch):
    """Each object's "done" reaches its share (the last one 100%) without ending the line, and a shorter stage's
    name after a longer one leaves none of the longer one behind (each redraw clears to the line's end)."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    bar = ProgressBar()
    for stage, fraction in (("label 1: matting", 0.2), ("label 1: done", 0.5), ("label 2: done", 1.0),
                            ("done", 1.0)):
        bar(stage, fraction)
    text = screen.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    draws = text.rstrip("\n").split("\r")[1:]
    assert len(draws) == 4 and all(d.endswith("s\x1b[K") for d in draws)
    assert "100.0% done" in draws[-1]

"""Ctrl+C during a command is "interrupted" (exit 130) however it reaches main(): numba turns a KeyboardInterrupt
raised while it loads a compiled function (pymatting's foreground estimation, seen under repeated Ctrl+C) into a
SystemError whose context is the interrupt."""

import pytest
from layeringdiff import cli


def interrupted_inside_numba(args):
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise SystemError("CPUDispatcher(<function _estimate_fb_ml>) returned a result with an exception set") from None


def interrupted_and_rewrapped(args):
    try:
        interrupted_inside_numba(args)
    except SystemError as exc:
        raise RuntimeError("while splitting") from exc


def plain_interrupt(args):
    raise KeyboardInterrupt


def a_real_fault(args):
    raise SystemError("a fault of this program")


@pytest.mark.parametrize("command", [plain_interrupt, interrupted_inside_numba, interrupted_and_rewrapped])
def test_an_interrupt_is_reported_as_one_whatever_wraps_it(monkeypatch, capsys, command):
    monkeypatch.setattr(cli, "cmd_split", command)
    assert cli.main(["split", "x.png", "--box", "1,1,5,5", "-o", "x.ora"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_fault_that_no_interrupt_caused_stays_an_internal_error(monkeypatch, capsys):
    monkeypatch.delenv("LAYERINGDIFF_DEBUG", raising=False)
    monkeypatch.setattr(cli, "cmd_split", a_real_fault)
    assert cli.main(["split", "x.png", "--box", "1,1,5,5", "-o", "x.ora"]) == cli.EXIT_INTERNAL
    assert "internal error: SystemError: a fault of this program" in capsys.readouterr().err

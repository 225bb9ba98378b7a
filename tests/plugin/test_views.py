from layeringdiff_krita.views import ViewGroup

from .fakes import FakeView


def test_every_window_sees_the_same_state_and_latecomers_catch_up():
    group = ViewGroup()
    first = FakeView()
    group.add(first)
    group.set_connection("connected", "backend at tcp://127.0.0.1:1")
    group.set_busy(True)
    group.set_progress("matting", 0.4)
    group.show_message("working", False)
    late = FakeView()
    group.add(late)
    assert late.connection == first.connection == ("connected", "backend at tcp://127.0.0.1:1")
    assert late.busy and late.messages[-1] == ("working", False)
    group.set_busy(False)
    assert not first.busy and not late.busy
    group.remove(first)
    group.show_message("done", False)
    assert first.messages[-1] == ("working", False) and late.messages[-1] == ("done", False)
    group.remove(first)  # twice is harmless

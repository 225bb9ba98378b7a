"""The docker's connection to a backend served with CURVE keys: the real server, the plugin's own client.

Every failed key exchange is named at once (from the socket monitor), with what to change in Settings,
instead of a silent wait for the heartbeat timeout."""

import time

import pytest
import zmq
from layering_protocol import Ping, Result
from layeringdiff.keys import add_client, init_keys
from layeringdiff_krita.connection import BackendClient, SendFailed, State
from layeringdiff_krita.controller import Controller
from layeringdiff_krita.settings import Settings

from tests.timing import AT_ONCE_S, LOADED_MARGIN_S, returns_within, until_refused

from .fakes import FakeBridge, FakeView
from .test_controller import make, pump

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def settle(client: BackendClient, timeout: float = 10.0) -> BackendClient:
    deadline = time.monotonic() + timeout
    while client.state == State.CONNECTING and time.monotonic() < deadline:
        client.poll()
        client.tick()
        time.sleep(0.01)
    return client


@pytest.fixture
def alice(curve_keys):
    return {"server_key": str(curve_keys / "server.key"),
            "client_key": str(curve_keys / "secrets" / "alice.key_secret")}


def connect(endpoint: str, **keys) -> tuple[str, str]:
    """(state, detail) once the handshake is over."""
    client = BackendClient(endpoint, **keys)
    client.connect()
    try:
        settle(client)
        return client.state, client.detail
    finally:
        client.close()


def test_an_allowed_machine_connects(secure_backend, alice):
    state, detail = connect(secure_backend.local, server_key=secure_backend.ready["server_key"],
                            client_key=alice["client_key"])
    assert state == State.CONNECTED and "layeringdiff" in detail


def test_a_key_the_server_does_not_allow_is_named(secure_backend, curve_keys, tmp_path):
    stranger = tmp_path / "stranger"
    init_keys(stranger)
    started = time.monotonic()
    state, detail = connect(secure_backend.local, server_key=str(curve_keys / "server.key"),
                            client_key=str(add_client(stranger, "mallory")))
    assert state == State.REFUSED and "refused this computer's key" in detail
    named = time.monotonic() - started
    assert named < AT_ONCE_S + LOADED_MARGIN_S, f"named after {named:.2f} s"  # not after LOST_S of silence


def test_a_send_without_a_connection_never_blocks(secure_backend, curve_keys, tmp_path):
    """A refused key exchange drops the DEALER's connection, and a DEALER with none blocks on send: the docker's
    client, as shipped, fails such a send with SendFailed at once (Krita's UI thread sends), even before its
    poll() has seen the refusal and closed the socket."""
    stranger = tmp_path / "stranger"
    init_keys(stranger)
    ctx = zmq.Context()  # its own: the guard terminates it if a send blocks for good
    client = BackendClient(secure_backend.local, ctx=ctx, server_key=str(curve_keys / "server.key"),
                           client_key=str(add_client(stranger, "mallory")))

    def send_until_refused() -> tuple[float, BaseException]:
        client.connect()  # its hello is queued while the key exchange lasts; no poll(): the socket stays open
        return until_refused(lambda: client.send(Ping(1.0)), SendFailed)

    took, exc = returns_within(send_until_refused, 5 + AT_ONCE_S + LOADED_MARGIN_S, ctx, client.close)
    assert "takes no messages now" in str(exc) and took < AT_ONCE_S + LOADED_MARGIN_S, f"{took:.2f} s: {exc}"


@pytest.mark.parametrize("case,words", [
    ("no keys", "requires keys"),
    ("wrong server key", "check the Server key"),
    ("missing key file", "cannot read the key file"),
    ("server key text", "40-character"),
    ("public key only", "holds only a public key"),
    ("server key only", "no Client key file"),
])
def test_key_problems_say_what_to_fix(secure_backend, curve_keys, alice, tmp_path, case, words):
    other = tmp_path / "other"
    init_keys(other)
    keys = {"no keys": {},
            "wrong server key": {**alice, "server_key": str(other / "server.key")},
            "missing key file": {**alice, "client_key": str(tmp_path / "nope.key_secret")},
            "server key text": {**alice, "server_key": "not a key"},
            "public key only": {**alice, "client_key": str(curve_keys / "clients" / "alice.key")},
            "server key only": {"server_key": alice["server_key"]}}[case]
    state, detail = connect(secure_backend.local, **keys)
    assert state == State.REFUSED and words in detail, detail


def test_keys_for_a_backend_without_them_say_so(backend, alice):
    state, detail = connect(backend.endpoint, **alice)
    assert state == State.REFUSED and "does not use" in detail


def test_the_docker_splits_through_a_keyed_backend(secure_backend, alice):
    ctl, view = make(secure_backend.local, settings_extra=alice)
    try:
        ctl.split_selected("cat")
        pump(ctl, lambda: ctl.job is None)
        assert isinstance(ctl.bridge.applied[0][2], Result)
    finally:
        ctl.shutdown()


def test_the_docker_shows_a_refusal(secure_backend):
    view = FakeView()
    ctl = Controller(FakeBridge(), view, Settings(autostart=False, endpoint=secure_backend.local))
    ctl.start()
    try:
        pump(ctl, lambda: view.connection[0] == State.REFUSED, 10)
        assert "requires keys" in view.connection[1]
    finally:
        ctl.shutdown()

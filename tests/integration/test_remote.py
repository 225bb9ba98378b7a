"""A backend served beyond loopback: CURVE keys made by the CLI, the real server process, real sockets."""

import os
import subprocess
import sys
import time

import pytest
import zmq
from layering_protocol import PROTOCOL_VERSION, Capabilities, Hello, Ping, Result, Split
from layering_protocol.curve import client_key_pair, read_key_file, server_public_key
from layeringdiff.client import LOST_S, BackendLost, Client
from layeringdiff.keys import add_client, init_keys

from tests.conftest import BackendProcess
from tests.integration.test_server import layer_and_mask
from tests.timing import LOADED_MARGIN_S, REVOKE_S, returns_within, until_refused

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "layeringdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def answers(server, timeout=2.0, **keys) -> bool:
    with Client(server.local, **keys) as c:
        try:
            return isinstance(c.request(Hello("pytest", PROTOCOL_VERSION), timeout).message, Capabilities)
        except (TimeoutError, BackendLost):  # a refused key exchange: silence, or no connection to send on
            return False


def test_keys_cli(tmp_path):
    folder = tmp_path / "k"
    out = cli("keys", "init", folder)
    assert out.returncode == 0, out.stderr
    public = read_key_file(folder / "server.key")["public"].decode()
    assert public in out.stdout and "--keys" in out.stdout
    assert cli("keys", "init", folder).returncode == 0 and public in cli("keys", "init", folder).stdout  # kept
    out = cli("keys", "client", folder, "alice-laptop")
    secret = folder / "secrets" / "alice-laptop.key_secret"
    assert out.returncode == 0 and str(secret) in out.stdout
    assert (folder / "clients" / "alice-laptop.key").is_file() and secret.stat().st_mode & 0o077 == 0
    assert client_key_pair(str(secret))[0] == read_key_file(folder / "clients" / "alice-laptop.key")["public"]
    for args, words in ((("client", folder, "alice-laptop"), "exists"), (("client", folder, "a b"), "client name"),
                        (("client", folder), "needs a NAME"), (("client", tmp_path / "none", "x"), "keys init")):
        out = cli("keys", *args)
        assert out.returncode == 2 and words in out.stderr, out.stderr


def test_serving_beyond_loopback_needs_keys(tmp_path):
    out = cli("serve", "--host", "0.0.0.0")
    assert out.returncode == 2 and "--keys" in out.stderr and "READY" not in out.stdout
    out = cli("serve", "--host", "0.0.0.0", "--keys", tmp_path)
    assert out.returncode == 2 and "keys init" in out.stderr


def test_an_allowed_machine_splits_over_curve(secure_backend, curve_keys):
    assert server_public_key(secure_backend.ready["server_key"]) == read_key_file(curve_keys / "server.key")["public"]
    with Client(secure_backend.local, server_key=secure_backend.ready["server_key"],
                client_key=str(curve_keys / "secrets" / "alice.key_secret")) as c:
        _, image, mask = layer_and_mask(96)
        final, _ = c.run(Split(image, mask=mask), timeout=60)
        assert isinstance(final.message, Result)


def test_others_get_no_answer_and_the_server_keeps_serving(secure_backend, curve_keys, tmp_path):
    stranger = tmp_path / "stranger"
    init_keys(stranger)
    alice = {"server_key": str(curve_keys / "server.key"),
             "client_key": str(curve_keys / "secrets" / "alice.key_secret")}
    assert not answers(secure_backend)  # no keys at all
    assert not answers(secure_backend, server_key=str(curve_keys / "server.key"),
                       client_key=str(add_client(stranger, "mallory")))  # a key pair the server never allowed
    assert not answers(secure_backend, server_key=str(stranger / "server.key"), client_key=alice["client_key"])
    assert answers(secure_backend, **alice)


def test_clients_are_added_and_revoked_without_a_restart(secure_backend, curve_keys):
    bob = {"server_key": str(curve_keys / "server.key"), "client_key": str(add_client(curve_keys, "bob"))}
    assert answers(secure_backend, **bob)
    (curve_keys / "clients" / "bob.key").unlink()
    assert not answers(secure_backend, **bob)


def test_the_client_never_hangs_on_send_without_a_connection(secure_backend, curve_keys, tmp_path):
    """A refused key exchange drops the DEALER's connection, and a DEALER with none blocks on send: the client as
    shipped gives up after LOST_S with BackendLost, as for a silent backend, instead of hanging its caller."""
    stranger = tmp_path / "stranger"
    init_keys(stranger)
    ctx = zmq.Context()  # its own: the guard terminates it if a send blocks for good
    c = Client(secure_backend.local, ctx, server_key=str(curve_keys / "server.key"),
               client_key=str(add_client(stranger, "mallory")))

    took, exc = returns_within(lambda: until_refused(lambda: c.send(Ping(1.0)), BackendLost),
                               5 + LOST_S + LOADED_MARGIN_S, ctx, c.close)
    assert "could not send" in str(exc) and f"for {LOST_S:.0f} s" in str(exc)
    assert LOST_S - 0.1 < took < LOST_S + LOADED_MARGIN_S, f"the send gave up after {took:.2f} s"


def test_revoking_a_key_cuts_off_its_open_connection(secure_backend, curve_keys):
    """Deleting clients/NAME.key while that machine is connected and running a job: within a second its
    requests go unanswered, its job is cancelled and its connection is closed; others keep working."""
    from layering_protocol import Accepted, Pong

    carol = {"server_key": str(curve_keys / "server.key"), "client_key": str(add_client(curve_keys, "carol"))}
    alice = {"server_key": str(curve_keys / "server.key"),
             "client_key": str(curve_keys / "secrets" / "alice.key_secret")}
    with Client(secure_backend.local, **carol) as c:
        monitor = c.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        assert isinstance(c.request(Ping(1.0), 10).message, Pong)
        _, image, mask = layer_and_mask(1024)
        job = c.send(Split(image, mask=mask))
        assert isinstance(c.recv(30).message, Accepted)
        (curve_keys / "clients" / "carol.key").unlink()
        start = time.monotonic()
        assert monitor.poll(5000), "the server did not close the revoked machine's connection"
        closed_after = time.monotonic() - start
        late = c.send(Ping(2.0))
        replies = []
        with pytest.raises((TimeoutError, BackendLost)):
            while True:
                replies.append(c.recv(3))
        assert not any(r.reply_to == late for r in replies)  # refused: no answer
        assert not any(isinstance(r.message, Result) for r in replies if r.reply_to == job)
        monitor.close(0)
    assert closed_after < REVOKE_S + LOADED_MARGIN_S, f"closed {closed_after:.2f} s after the key was deleted"
    deadline = time.monotonic() + 10
    while "carol) was revoked" not in secure_backend.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "cut off client carol: its key (carol) was revoked" in secure_backend.log
    assert "its jobs cancelled, its connection closed" in secure_backend.log
    assert answers(secure_backend, **alice)
    assert not answers(secure_backend, **carol)


def test_secret_key_files_are_private_from_their_first_byte(tmp_path, monkeypatch):
    """Every secret key file is created 0600 (never written first and chmod-ed after), new key folders
    0700."""
    import os
    import stat

    created = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            created.append((str(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    folder = tmp_path / "new" / "keys"
    init_keys(folder)
    secret = add_client(folder, "dora")
    secrets = [c for c in created if c[0].endswith(".key_secret") or ".key_secret." in c[0]]
    assert len(secrets) == 2
    assert all(mode == 0o600 and flags & os.O_EXCL for _, flags, mode in secrets)
    for path in (folder / "server.key_secret", secret):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for path in (folder, folder / "secrets"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert client_key_pair(str(secret))[0] == read_key_file(folder / "clients" / "dora.key")["public"]
    assert stat.S_IMODE((folder / "clients" / "dora.key").stat().st_mode) == 0o644 & ~current_umask()


def current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


posix_modes = pytest.mark.skipif(os.name != "posix", reason="Windows has no such file modes")


@posix_modes
def test_keys_init_and_client_make_an_open_folder_private(tmp_path):
    """A keys folder, clients/ and secrets/ found 0777 (made so by hand) end up 0700; a server secret key
    found 0644 ends up 0600."""
    folder = tmp_path / "k"
    for path in (folder, folder / "clients", folder / "secrets"):
        path.mkdir()
        path.chmod(0o777)
    assert cli("keys", "init", folder).returncode == 0
    assert {path.name: mode(path) for path in (folder, folder / "clients", folder / "secrets")} == \
        {"k": 0o700, "clients": 0o700, "secrets": 0o700}
    assert mode(folder / "server.key_secret") == 0o600
    for path in (folder, folder / "clients", folder / "secrets"):
        path.chmod(0o777)
    (folder / "server.key_secret").chmod(0o644)
    out = cli("keys", "client", folder, "erin")
    assert out.returncode == 0, out.stderr
    assert [mode(p) for p in (folder, folder / "clients", folder / "secrets")] == [0o700] * 3
    assert mode(folder / "secrets" / "erin.key_secret") == 0o600
    assert cli("keys", "init", folder).returncode == 0 and mode(folder / "server.key_secret") == 0o600


@posix_modes
def test_serve_refuses_keys_that_other_users_can_read_or_change(tmp_path):
    folder = tmp_path / "k"
    init_keys(folder)
    add_client(folder, "frank")
    secret, clients = folder / "server.key_secret", folder / "clients"
    for path, loose, fix in ((secret, 0o644, 0o600), (secret, 0o640, 0o600), (clients, 0o777, 0o700),
                             (clients, 0o770, 0o700), (folder, 0o757, 0o700)):
        path.chmod(loose)
        out = cli("serve", "--keys", folder)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and "READY" not in out.stdout, out.stderr
        assert len(lines) == 1 and str(path) in lines[0] and lines[0].endswith(f"chmod {fix:o} {path}"), lines
        path.chmod(fix)
    (folder / "secrets").chmod(0o755)  # secrets/ is not the server's: handed-out keys, readable or not
    clients.chmod(0o755)  # readable by others is fine: public keys
    server = BackendProcess("--keys", str(folder))
    try:
        assert server_public_key(server.ready["server_key"]) == read_key_file(folder / "server.key")["public"]
        with Client(server.endpoint, server_key=str(folder / "server.key"),
                    client_key=str(folder / "secrets" / "frank.key_secret")) as c:
            assert isinstance(c.request(Hello("pytest", PROTOCOL_VERSION), 10).message, Capabilities)
    finally:
        server.terminate()


@posix_modes
def test_a_client_key_that_other_users_can_change_is_not_allowed(secure_backend, curve_keys):
    gina = {"server_key": str(curve_keys / "server.key"), "client_key": str(add_client(curve_keys, "gina"))}
    (curve_keys / "clients" / "gina.key").chmod(0o666)
    try:
        assert not answers(secure_backend, **gina)
        assert "skipping client key" in secure_backend.log and "gina.key: other users can write to it" in \
            secure_backend.log
    finally:
        (curve_keys / "clients" / "gina.key").chmod(0o644)
    assert answers(secure_backend, **gina)


def mode(path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_a_flood_of_refused_handshakes_costs_a_read_a_second_and_a_few_log_lines(tmp_path, monkeypatch, caplog):
    """Made-up keys (anyone with the server's public key can send them), 500 handshakes: clients/ read once, not
    500 times, five lines logged and the rest counted; a key added or deleted meanwhile counts at once."""
    from layeringdiff import keys as keys_module

    folder = tmp_path / "keys"
    init_keys(folder)
    alice = read_key_file(add_client(folder, "alice"))["public"]
    reads = []
    real = keys_module.allowed_clients
    monkeypatch.setattr(keys_module, "allowed_clients", lambda f: reads.append(f) or real(f))
    now = [1000.0]
    monkeypatch.setattr(keys_module.time, "monotonic", lambda: now[0])
    clients = keys_module.ClientList(folder)
    caplog.set_level("INFO", logger=keys_module.log.name)
    assert not any(clients.callback("*", zmq.curve_keypair()[0]) for _ in range(500))
    assert len(reads) == 1 and caplog.text.count("refused a client") == keys_module.REFUSED_LOG_BURST
    assert clients.callback("*", alice)
    listing = folder / "clients"

    def touched(step: int) -> None:  # the listing's new mtime (a clock tick can be coarser than these steps)
        os.utime(listing, ns=(listing.stat().st_atime_ns, listing.stat().st_mtime_ns + step * 10**9))

    bob = read_key_file(add_client(folder, "bob"))["public"]  # the folder's listing changed: read again
    touched(1)
    assert clients.callback("*", bob) and len(reads) == 2
    (folder / "clients" / "alice.key").unlink()
    touched(2)
    assert not clients.callback("*", alice) and len(reads) == 3
    now[0] += 61  # the next minute: the count of the last one, and lines again
    assert not clients.callback("*", zmq.curve_keypair()[0])
    assert f"... and {500 - keys_module.REFUSED_LOG_BURST + 1} more clients refused in that minute" in caplog.text
    assert caplog.text.count("refused a client") == keys_module.REFUSED_LOG_BURST + 1

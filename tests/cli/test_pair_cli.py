"""`hearth pair`, `unpair` and `rendezvous` on the command line: wrong codes and malformed input."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import HEARTH, free_port, hearth_env, wait_answering
from tests.lan import needs_root

pytestmark = pytest.mark.slow


def cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, *args], env=hearth_env(home, HEARTH_TUNNEL="sealed"), capture_output=True,
                          text=True, timeout=timeout)


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args, code in ((["pair", "--bind", "127.0.0.1", "--port", port], 7),
                           (["rendezvous", "--bind", "127.0.0.1", "--port", port], 7),
                           (["node", "--port", port, "--admit", "paired"], 1), (["serve", "--port", port], 1)):
            r = cli(tmp_path, *args)
            assert r.returncode == code and port in r.stderr and "Traceback" not in r.stderr, r.stderr
            if "paired" in args:  # the old spelling of --admit trusted still works, with a note
                assert "--admit paired is deprecated; write --admit trusted." in r.stderr, r.stderr


def test_a_wrong_code_fails_both_sides_and_burns_the_code(tmp_path: Path) -> None:
    port = free_port()
    host = subprocess.Popen([*HEARTH, "pair", "--bind", "127.0.0.1", "--port", str(port), "--yes"],
                            env=hearth_env(tmp_path / "a", HEARTH_TUNNEL="sealed"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert host.stdout is not None
    code = next(m.group(1) for line in host.stdout if (m := re.search(r"hearth pair (\S+)", line)))
    nameplate, first, second = code.split("-")
    wrong = f"{nameplate}-{second}-{first}" if first != second else f"{nameplate}-{first}-acre"
    time.sleep(0.5)
    guest = cli(tmp_path / "b", "pair", wrong, "--to", f"127.0.0.1:{port}", "--yes")
    rest, _ = host.communicate(timeout=30)
    assert guest.returncode == 7 and "Wrong code" in guest.stderr, guest.stderr
    assert host.returncode == 7 and "gave up" in rest, rest
    # The code is burned: the host stopped listening, so the right code now finds nobody.
    again = cli(tmp_path / "b", "pair", code, "--to", f"127.0.0.1:{port}", "--yes")
    assert again.returncode == 7 and "Cannot reach" in again.stderr
    assert not (tmp_path / "a" / "trust" / "peers.json").exists()
    assert not (tmp_path / "b" / "trust" / "peers.json").exists()


def test_declining_the_verifier_pairs_nothing(tmp_path: Path) -> None:
    port = free_port()
    host = subprocess.Popen([*HEARTH, "pair", "--bind", "127.0.0.1", "--port", str(port)],
                            env=hearth_env(tmp_path / "a", HEARTH_TUNNEL="sealed"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert host.stdout is not None and host.stdin is not None
    code = next(m.group(1) for line in host.stdout if (m := re.search(r"hearth pair (\S+)", line)))
    time.sleep(0.5)
    guest = subprocess.run([*HEARTH, "pair", code, "--to", f"127.0.0.1:{port}"], input="n\n",
                           env=hearth_env(tmp_path / "b", HEARTH_TUNNEL="sealed"), capture_output=True, text=True,
                           timeout=60)
    rest, _ = host.communicate("y\n", timeout=30)
    assert guest.returncode == 2 and "not confirmed" in guest.stderr, guest.stderr
    assert host.returncode == 0, rest
    assert not (tmp_path / "b" / "trust" / "peers.json").exists()
    assert (tmp_path / "a" / "trust" / "peers.json").exists()


def test_pairing_through_a_rendezvous_on_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    rendezvous = subprocess.Popen([*HEARTH, "rendezvous", "--bind", "127.0.0.1", "--port", str(port)],
                                  env=hearth_env(tmp_path / "r"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
    try:
        assert rendezvous.stderr is not None and "rendezvous on" in rendezvous.stderr.readline()
        via = f"127.0.0.1:{port}"
        host = subprocess.Popen([*HEARTH, "pair", "--via", via, "--name", "den", "--yes"],
                                env=hearth_env(tmp_path / "a", HEARTH_TUNNEL="sealed"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert host.stdout is not None
        code = next(m.group(1) for line in host.stdout if (m := re.search(r"hearth pair (\S+) --via", line)))
        time.sleep(0.5)
        guest = cli(tmp_path / "b", "pair", code, "--via", via, "--name", "attic", "--yes")
        rest, _ = host.communicate(timeout=30)
        assert guest.returncode == 0 and host.returncode == 0, guest.stderr + rest
        assert "paired with den" in guest.stdout and "paired with attic" in rest
        assert re.search(r"Verifier: (\S+)", guest.stdout).group(1) in rest  # type: ignore[union-attr]
    finally:
        rendezvous.terminate()
        rendezvous.wait(10)


@pytest.mark.root
@needs_root
def test_without_cap_net_admin_wireguard_is_refused_plainly_with_the_fallback(tmp_path: Path) -> None:
    r = subprocess.run(["setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", *HEARTH, "node",
                        "--admit", "paired"], env=hearth_env(tmp_path, HEARTH_TUNNEL="wireguard",
                                                             HEARTH_WG_INTERFACE="hnoadm0"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 8, r.stderr
    assert "CAP_NET_ADMIN" in r.stderr and "HEARTH_TUNNEL=sealed" in r.stderr and "Traceback" not in r.stderr


def _wait_for(stream: IO[str], pattern: str, timeout: float = 30) -> re.Match[str]:
    """The first line of `stream` matching `pattern` (the process's own output, read as it comes)."""
    deadline = time.monotonic() + timeout
    for line in stream:
        if m := re.search(pattern, line):
            return m
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no line matched {pattern!r}")


def _stranger(port: int, source: str, *lines: bytes, read: bool = True) -> bytes:
    """Connect to 127.0.0.1:port from `source` (another loopback address), say `lines`, hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        for data in lines:
            s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        return answer


def _meet(nameplate: int, side: str) -> bytes:
    return json.dumps({"t": "meet", "nameplate": nameplate, "side": side}).encode() + b"\n"


def _pair_via(tmp_path: Path, via: str, before_guest: Callable[[], object]) -> tuple[subprocess.CompletedProcess[str], str, int]:
    host = subprocess.Popen([*HEARTH, "pair", "--via", via, "--name", "den", "--yes"],
                            env=hearth_env(tmp_path / "a", HEARTH_TUNNEL="sealed"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert host.stdout is not None
        code = _wait_for(host.stdout, r"hearth pair (\S+) --via").group(1)
        time.sleep(0.5)  # the host's meet reaches the rendezvous
        before_guest()
        guest = cli(tmp_path / "b", "pair", code, "--via", via, "--name", "attic", "--yes")
        rest, _ = host.communicate(timeout=30)
        return guest, rest, host.returncode
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def _rendezvous(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*HEARTH, "rendezvous", "--bind", "127.0.0.1", "--port", str(port)],
                            env=hearth_env(tmp_path / "r"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None and "rendezvous on" in proc.stderr.readline()
    return proc


def test_a_rendezvous_squatted_from_closed_sockets_still_pairs(tmp_path: Path) -> None:
    """64 "host" lines from sockets closed at once (64 addresses) used to refuse every pairing for
    5 minutes; a real pairing through the same rendezvous right after must succeed."""
    port = free_port()
    rendezvous = _rendezvous(tmp_path, port)
    try:
        for i in range(64):
            _stranger(port, f"127.0.0.{10 + i}", _meet(100 + i, "host"), read=False)
        guest, rest, code = _pair_via(tmp_path, f"127.0.0.1:{port}", lambda: None)
        assert guest.returncode == 0 and code == 0, guest.stderr + rest
        assert "paired with den" in guest.stdout and "paired with attic" in rest
    finally:
        rendezvous.terminate()
        rendezvous.wait(10)


def test_a_rendezvous_scanned_over_every_nameplate_still_pairs(tmp_path: Path) -> None:
    """A stranger claiming nameplates 1..999 as guest used to burn every waiting code in under a
    second; now the scan is throttled and never reaches the host, and the real guest pairs."""
    port = free_port()
    rendezvous = _rendezvous(tmp_path, port)
    answers: list[bytes] = []

    def scan() -> None:
        answers.extend(_stranger(port, "127.0.0.2", _meet(n, "guest")) for n in range(1, 1000))

    try:
        guest, rest, code = _pair_via(tmp_path, f"127.0.0.1:{port}", scan)
        assert guest.returncode == 0 and code == 0, guest.stderr + rest
        assert "paired with den" in guest.stdout and "paired with attic" in rest
        assert sum(b"attempts a minute" in a for a in answers) >= 980
    finally:
        rendezvous.terminate()
        rendezvous.wait(10)


@pytest.fixture
def isolated_lan() -> Iterator[tuple[str, str, str, str]]:
    """Two namespaces joined by one veth pair, 10.213.0.1/24 and 10.213.0.2/24, and no route but
    the link's own: an isolated LAN (a switch, no router), where a UDP connect() toward the mDNS
    group fails with ENETUNREACH. Names are this test's own (not scripts/lan.py's hth*)."""
    tag = f"hpair{os.getpid() % 100000}"
    a, b, veth = f"{tag}a", f"{tag}b", f"hpv{os.getpid() % 100000}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", f"{veth}a", "netns", a, "type", "veth", "peer", "name", f"{veth}b", "netns", b)
        for ns, dev, addr in ((a, f"{veth}a", "10.213.0.1/24"), (b, f"{veth}b", "10.213.0.2/24")):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield a, "10.213.0.1", b, "10.213.0.2"
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _in(ns: str, home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *HEARTH, *args], env=hearth_env(home, HEARTH_TUNNEL="sealed"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.root
@needs_root
def test_pair_on_a_lan_without_routes_waits_on_the_lan_address(tmp_path: Path,
                                                                isolated_lan: tuple[str, str, str, str]) -> None:
    """Without a route toward the mDNS group, `hearth pair` used to wait on 127.0.0.1, advertise
    nothing, and the other machine heard nobody waits. Now it waits on the LAN address and the
    guest finds it by mDNS; with two LAN addresses it refuses and names --bind."""
    a, addr_a, b, _ = isolated_lan
    host = _in(a, tmp_path / "a", "pair", "--yes", "--name", "den")
    try:
        assert host.stdout is not None
        code = _wait_for(host.stdout, r"hearth pair (\S+)").group(1)
        waiting = _wait_for(host.stdout, r"waiting on (\S+):").group(1)
        assert waiting == addr_a
        guest = subprocess.run(["ip", "netns", "exec", b, *HEARTH, "pair", code, "--yes", "--name", "attic"],
                               env=hearth_env(tmp_path / "b", HEARTH_TUNNEL="sealed"), capture_output=True, text=True,
                               timeout=60)
        rest, _ = host.communicate(timeout=30)
        assert guest.returncode == 0 and host.returncode == 0, guest.stdout + guest.stderr + rest
        assert "paired with den" in guest.stdout and "paired with attic" in rest
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)
    # A second LAN: another veth pair inside the same namespace (no dummy module here), both ends up.
    for args in (["link", "add", "hpx0", "type", "veth", "peer", "name", "hpx1"],
                 ["addr", "add", "10.214.0.1/24", "dev", "hpx0"], ["link", "set", "hpx0", "up"],
                 ["link", "set", "hpx1", "up"]):
        subprocess.run(["ip", "-n", a, *args], check=True, timeout=30)
    two = subprocess.run(["ip", "netns", "exec", a, *HEARTH, "pair", "--yes"], env=hearth_env(tmp_path / "a"),
                         capture_output=True, text=True, timeout=60)
    assert two.returncode == 2 and "--bind" in two.stderr and "10.214.0.1" in two.stderr, two.stderr
    assert "Traceback" not in two.stderr


def test_pairing_introduces_the_machine_by_its_node_name(tmp_path: Path) -> None:
    """After `hearth node --name den`, `hearth pair` (no --name) pairs as "den": the other machine's
    `hearth unpair den` works, and so does `hearth unpair HOSTNAME`."""
    node_port = free_port()
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        node = subprocess.Popen([*HEARTH, "node", "--name", "den", "--port", str(node_port)],
                                env=hearth_env(tmp_path / "a"), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_answering(f"http://127.0.0.1:{node_port}/", node, log)
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(30)
    for unpair_by in ("den", socket.gethostname()):
        port = free_port()
        host = subprocess.Popen([*HEARTH, "pair", "--bind", "127.0.0.1", "--port", str(port), "--yes"],
                                env=hearth_env(tmp_path / "a", HEARTH_TUNNEL="sealed"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            assert host.stdout is not None
            code = _wait_for(host.stdout, r"hearth pair (\S+)").group(1)
            guest = cli(tmp_path / "b", "pair", code, "--to", f"127.0.0.1:{port}", "--yes", "--name", "attic")
            host.communicate(timeout=30)
        finally:
            if host.poll() is None:
                host.kill()
            host.wait(10)
        assert guest.returncode == 0 and "paired with den" in guest.stdout, guest.stdout + guest.stderr
        gone = cli(tmp_path / "b", "unpair", unpair_by)
        assert gone.returncode == 0 and "Unpaired den" in gone.stdout, gone.stderr


@pytest.mark.parametrize("command, sig, code", [("pair", signal.SIGTERM, 143), ("pair", signal.SIGINT, 130),
                                                ("rendezvous", signal.SIGTERM, 0),
                                                ("rendezvous", signal.SIGINT, 130)])
def test_signals_stop_a_waiting_pair_and_a_rendezvous(tmp_path: Path, command: str, sig: int, code: int) -> None:
    """SIGTERM and SIGINT stop `hearth pair` (waiting) and `hearth rendezvous` within seconds, with
    one line and the exit code said in their help, leaving no process of their group behind."""
    port = str(free_port())
    proc = subprocess.Popen([*HEARTH, command, "--bind", "127.0.0.1", "--port", port],
                            env=hearth_env(tmp_path, HEARTH_TUNNEL="sealed"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None
        _wait_for(proc.stderr, r"waiting on|rendezvous on")
        proc.send_signal(sig)
        start = time.monotonic()
        _, rest = proc.communicate(timeout=15)
        took = time.monotonic() - start
        assert proc.returncode == code, (proc.returncode, rest)
        assert took < 5, took
        lines = [line for line in rest.splitlines() if line.strip()]
        assert len(lines) == 1 and "stopped" in lines[0] and signal.Signals(sig).name in lines[0], rest
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing of its process group is left
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.root
@needs_root
def test_sigterm_stops_a_pair_advertised_by_mdns(tmp_path: Path, isolated_lan: tuple[str, str, str, str]) -> None:
    """With its mDNS record up (a LAN address), a waiting `hearth pair` still stops within seconds."""
    a, addr_a, _, _ = isolated_lan
    host = _in(a, tmp_path, "pair", "--bind", addr_a)
    try:
        assert host.stdout is not None
        _wait_for(host.stdout, r"waiting on")
        time.sleep(0.5)  # the record is announced
        host.send_signal(signal.SIGTERM)
        start = time.monotonic()
        rest, _ = host.communicate(timeout=15)
        assert host.returncode == 143 and "stopped (SIGTERM)" in rest, rest
        assert time.monotonic() - start < 5
        with pytest.raises(ProcessLookupError):
            os.killpg(host.pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)

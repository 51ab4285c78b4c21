"""The private network of a local instance and its relay (lighthouse_serving.isolation), without
Ray: a namespace entered in a child process, and the relay between two sockets of this test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lighthouse_serving.isolation import Relay, listen
from lighthouse_serving.probe import free_port

SERVING = Path(__file__).resolve().parents[1]


class Upstream:
    """Serve's proxy stand-in: answers each connection's bytes upper-cased, then, once the
    caller stops sending, says "bye" and closes."""

    def __init__(self) -> None:
        self.server = listen("127.0.0.1", 0)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    @staticmethod
    def _answer(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data.upper())
            connection.sendall(b"bye")


@pytest.fixture
def relayed() -> Iterator[tuple[Relay, int]]:
    upstream = Upstream()
    relay = Relay(listen("127.0.0.1", 0), upstream.port)
    relay.start()
    try:
        yield relay, relay.server.getsockname()[1]
    finally:
        relay.stop()
        upstream.server.close()


def receive_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_bytes_go_both_ways_and_a_half_close_is_passed_on(relayed: tuple[Relay, int]) -> None:
    _relay, port = relayed
    with socket.create_connection(("127.0.0.1", port), timeout=10) as caller:
        caller.sendall(b"hello")
        assert caller.recv(5) == b"HELLO"
        big = os.urandom(3 * 1024 * 1024).hex().encode()  # larger than every buffer on the way
        threading.Thread(target=caller.sendall, args=(big,), daemon=True).start()
        received = b""
        while len(received) < len(big):
            received += caller.recv(1024 * 1024)
        assert received == big.upper()
        caller.shutdown(socket.SHUT_WR)  # done sending; the answer still comes back
        assert receive_all(caller) == b"bye"


def test_with_nothing_behind_it_a_connection_is_closed_not_held() -> None:
    relay = Relay(listen("127.0.0.1", 0), free_port())
    relay.start()
    try:
        port = relay.server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as caller:
            assert receive_all(caller) == b""
    finally:
        relay.stop()


def test_connections_beyond_the_bound_are_closed(relayed: tuple[Relay, int]) -> None:
    relay, port = relayed
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for connection in held:  # each is carried: a thread and an upstream connection
            connection.sendall(b"x")
            assert connection.recv(1) == b"X"
        # Take every remaining slot, as a flood of callers would.
        taken = 0
        while relay._slots.acquire(blocking=False):
            taken += 1
        assert taken == Relay.MAX_CONNECTIONS - 3
        with socket.create_connection(("127.0.0.1", port), timeout=10) as refused:
            assert receive_all(refused) == b""
        for _ in range(taken):
            relay._slots.release()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as admitted:
            admitted.sendall(b"y")
            assert admitted.recv(1) == b"Y"
    finally:
        for connection in held:
            connection.close()


ENTER = """
import socket, sys
from lighthouse_serving.isolation import enter_private_network, listen
outside = listen("127.0.0.1", int(sys.argv[1]))
enter_private_network()
names = [line.split(":")[0].strip() for line in open("/proc/self/net/dev").read().splitlines()[2:]]
inside = listen("127.0.0.1", 0)   # the loopback is up: this connects
socket.create_connection(inside.getsockname(), timeout=5).close()
print(",".join(names), flush=True)
outside.accept()[0].sendall(b"from inside")   # the socket opened before still serves outside
"""


def test_the_private_network_has_only_a_working_loopback_and_keeps_the_socket_made_before() -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(SERVING))
    child = subprocess.Popen(
        [sys.executable, "-c", ENTER, str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "lo"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as caller:
            assert receive_all(caller) == b"from inside"
        assert child.wait(10) == 0
    finally:
        child.kill()

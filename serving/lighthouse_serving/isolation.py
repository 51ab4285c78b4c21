"""A local instance's Ray, out of the network's reach: a private network namespace and one relay.

Ray 2.60 listens on every interface: the GCS server, the raylet, every worker's gRPC server and
Serve's replicas bind ``0.0.0.0`` or ``[::]``, whatever ``--node-ip-address`` says, and no
setting moves them to the loopback address. A tier started on one machine (``up``: the demo,
the tests, a workstation) would therefore offer Ray's control plane, which runs arbitrary code
by design, to everyone on the machine's network.

So the supervisor opens the one socket the tier should offer (the API, on the config's
address, in the machine's own network) and then moves itself into a new user and network
namespace whose only interface is the loopback. Ray and everything it starts are born there:
whatever they bind, nobody outside the namespace can reach it. The socket opened before the
move stays in the machine's network; a relay thread accepts connections on it and carries
their bytes to Serve's HTTP proxy on the namespace's loopback, unchanged (keep-alive and
streamed answers included). Unprivileged user namespaces are all it needs; no root, no
firewall rule.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import selectors
import socket
import struct
import threading
from contextlib import suppress

log = logging.getLogger("lighthouse_serving.isolation")

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class IsolationError(Exception):
    """The kernel refused a private network namespace; the message says what to do."""


def listen(host: str, port: int, backlog: int = 512) -> socket.socket:
    """The API's listening socket, in the network the process is in now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(backlog)
    return server


def enter_private_network() -> None:
    """Move this process (single-threaded: the kernel refuses otherwise) into a new user and
    network namespace, as root of it, and bring its loopback interface up."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise IsolationError(
            f"the kernel refused a private network namespace for Ray ({os.strerror(errno)}); "
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
            "user.max_user_namespaces > 0), or set `ray: private_network: false` in the config "
            "and keep the machine's Ray ports off every network by a firewall"
        )
    # Root inside maps to the caller outside: files stay the caller's, signals from the
    # caller's own processes (`down`) still reach every process of the instance.
    with open("/proc/self/setgroups", "w") as setgroups:
        setgroups.write("deny")
    with open("/proc/self/uid_map", "w") as uid_map:
        uid_map.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as gid_map:
        gid_map.write(f"0 {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(control, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


class Relay:
    """Carries each connection accepted on ``server`` (the machine's network) to
    ``target_port`` on this namespace's loopback, both ways, until either side closes."""

    BUFFER = 256 * 1024
    # Connections carried at once (a thread each); more are closed as they arrive. The
    # gateway keeps at most its pool's connections (64 by default) per process.
    MAX_CONNECTIONS = 1024

    def __init__(self, server: socket.socket, target_port: int) -> None:
        self.server = server
        self.target = ("127.0.0.1", target_port)
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _address = self.server.accept()
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if not self._slots.acquire(blocking=False):
                client.close()
                continue
            threading.Thread(target=self._carry, args=(client,), daemon=True).start()

    def _carry(self, client: socket.socket) -> None:
        try:
            self._carry_until_closed(client)
        finally:
            self._slots.release()

    def _carry_until_closed(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            # Serve's proxy is not listening (starting, or restarting after a crash): the
            # caller sees the connection closed, as it would see it refused, and retries.
            client.close()
            return
        upstream.settimeout(None)
        for end in (client, upstream):
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peers = {client: upstream, upstream: client}
        selector = selectors.DefaultSelector()
        for end in peers:
            selector.register(end, selectors.EVENT_READ)
        open_ends = 2
        try:
            while open_ends and not self._stop.is_set():
                for key, _events in selector.select(timeout=1.0):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(self.BUFFER)
                    except OSError:
                        data = b""
                    if data:
                        peers[source].sendall(data)
                        continue
                    # One side finished sending: pass the half-close on, keep the other way.
                    selector.unregister(source)
                    open_ends -= 1
                    with suppress(OSError):
                        peers[source].shutdown(socket.SHUT_WR)
        except OSError:
            pass  # a reset on either side ends the connection
        finally:
            selector.close()
            client.close()
            upstream.close()

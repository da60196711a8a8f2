"""Loopback endpoints that misbehave, for every destination type to be run against.

With the OTLP receiver's scripted answers (tests/otlp_receiver.py: 503 with
Retry-After, 400 with a message, 302, gRPC codes with RetryInfo, size refusals as
tonic and the Collector word them, partial success, a 4 MiB receive limit, a server
without gzip) and its BlackHole, they make the kit: refuse, reset, a response
trickled a byte at a time, an HTTP server that looks like gRPC to a preface, and one
whose answers never end (a 1 GiB body).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time

from tests.prometheus_server import free_port


def refusing_port() -> int:
    """A loopback port nobody listens on: connections are refused."""
    return free_port()


class _Server:
    """A TCP server on 127.0.0.1 that hands each connection to ``serve``, in a thread."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.connections = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve_and_close, args=(connection,), daemon=True).start()

    def _serve_and_close(self, connection: socket.socket) -> None:
        try:
            self.serve(connection)
        except OSError:
            pass
        finally:
            connection.close()

    def serve(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()


class Resetter(_Server):
    """Accepts, reads a little, and resets the connection (RST, not FIN). ``paths`` has
    the path of each HTTP request it reset."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__()

    def serve(self, connection: socket.socket) -> None:
        connection.settimeout(1)
        with contextlib.suppress(OSError):
            first = connection.recv(1024).split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(first) >= 2:
                self.paths.append(first[1])
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Trickler(_Server):
    """An HTTP server that answers 200 one byte every ``interval_s``: each read of the
    client gets something, so only a deadline for the whole request ends it."""

    def __init__(self, interval_s: float = 0.1, stop_after_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self.stop_after_s = stop_after_s
        super().__init__()

    def serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        connection.recv(1 << 20)
        body = b"x" * 1000
        response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        started = time.monotonic()
        for i in range(len(response)):
            if self._stopped.is_set() or time.monotonic() - started > self.stop_after_s:
                return
            connection.sendall(response[i : i + 1])
            time.sleep(self.interval_s)


class H2cLookalike(_Server):
    """Answers the HTTP/2 preface with a SETTINGS frame, as an OTLP/HTTP server that also
    speaks h2c does, then hangs up; answers HTTP/1.1 with ``status`` and ``body``. It
    speaks no gRPC: a client that judged by the preface alone would say it does."""

    def __init__(self, status: int = 400, body: bytes = b"not a gRPC server") -> None:
        self.status, self.body = status, body
        super().__init__()

    def serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        head = connection.recv(1 << 16)
        if head.startswith(b"PRI * HTTP/2.0"):
            connection.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # an empty SETTINGS
            return
        if _read_request(connection, head) is None:
            return
        connection.sendall(
            b"HTTP/1.1 %d Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (self.status, len(self.body)) + self.body
        )


def _read_request(connection: socket.socket, head: bytes = b"") -> str | None:
    """Read one HTTP/1.1 request with a Content-Length: its path, or None if the client
    hung up."""
    while b"\r\n\r\n" not in head:
        more = connection.recv(1 << 16)
        if not more:
            return None
        head += more
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    length = int(found.group(1)) if found else 0
    received = len(head.split(b"\r\n\r\n", 1)[1])
    while received < length:
        more = connection.recv(1 << 16)
        if not more:
            return None
        received += len(more)
    return head.split(b" ", 2)[1].decode("latin-1")


class Flooder(_Server):
    """Answers every HTTP request with ``status`` and a body of ``size`` bytes (1 GiB by
    default: a proxy's error page gone wrong), sent as fast as the client reads it.
    ``sent`` is how much of it the client took before it hung up; ``paths`` has the path
    of each request."""

    def __init__(self, status: int = 200, size: int = 1 << 30) -> None:
        self.status, self.size = status, size
        self.sent = 0
        self.paths: list[str] = []
        super().__init__()

    def serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        while (path := _read_request(connection)) is not None:
            self.paths.append(path)
            connection.sendall(
                b"HTTP/1.1 %d Flood\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % (self.status, self.size)
            )
            chunk = b"the server says no; " * 52_429  # about 1 MiB
            left = self.size
            while left > 0 and not self._stopped.is_set():
                piece = chunk[:left]
                connection.sendall(piece)
                self.sent += len(piece)
                left -= len(piece)

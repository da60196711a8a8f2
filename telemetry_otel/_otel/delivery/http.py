"""HTTP for OTLP: one connection per target, with a deadline for the whole request, and
the URL credentials and CA file a target names."""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from telemetry_otel._endpoints import OtlpTarget
from telemetry_otel._redact import split_credentials
from telemetry_otel._tls import client_context

_MAX_BODY = 64 * 1024  # of a response: enough for any status message, bounded for a hostile one


class _DeadlineSocket:
    """A socket whose every send and receive waits only until one deadline, so the
    deadline bounds the whole request however slowly the server answers."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = float("inf")
        self._readers = 0
        self._closed = False

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request's deadline passed")
        self._sock.settimeout(remaining)

    def sendall(self, data: Any, *args: Any) -> None:
        view = memoryview(data)
        while view:  # one send at a time, each within what is left of the deadline
            self._arm()
            sent = self._sock.send(view[: 64 * 1024])
            view = view[sent:]

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    # A response may outlive its connection's close() (HTTP/1.0, Connection: close): as
    # socket.socket does, the socket is closed once its last reader is.
    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self._sock.close()

    def abort(self) -> None:
        """Wake a receive blocked in another thread, now."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class HttpClient:
    """One keep-alive connection to an OTLP/HTTP endpoint (http.client: requests and
    urllib3 bound each read, not the request)."""

    def __init__(
        self,
        url: str,
        ca_file: str | None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        self._context = ssl.create_default_context(cafile=ca_file) if self._tls else None
        if self._context is not None:
            client_context(self._context, client_cert, client_key)
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(
        self, body: bytes, headers: dict[str, str], deadline: float
    ) -> tuple[int, str, dict[str, str], bytes]:
        with self._lock:
            try:
                return self._post(body, headers, deadline)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server had closed: one fresh try.
                self._drop()
                return self._post(body, headers, deadline)
            except BaseException:
                self._drop()
                raise

    def _post(
        self, body: bytes, headers: dict[str, str], deadline: float
    ) -> tuple[int, str, dict[str, str], bytes]:
        connection = self._connect(deadline)
        sock = connection.sock
        assert isinstance(sock, _DeadlineSocket)
        sock.deadline = deadline
        connection.request("POST", self._path, body, {"Host": self._host_header, **headers})
        response = connection.getresponse()
        data = response.read(_MAX_BODY)
        if response.getheader("connection", "").lower() == "close" or not _ended(response):
            # A body past the bound is never read to its end (a proxy's error page of a
            # gigabyte would be read whole): the connection goes instead.
            self._drop()
        found = {name.lower(): value for name, value in response.getheaders()}
        return response.status, response.reason, found, data

    def _connect(self, deadline: float) -> http.client.HTTPConnection:
        if self._connection is not None and self._connection.sock is not None:
            return self._connection
        self._drop()  # closed by the server's Connection: close, or never opened
        timeout = max(0.001, deadline - time.monotonic())
        connection: http.client.HTTPConnection
        if self._tls:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        connection.connect()
        connection.sock = _DeadlineSocket(connection.sock)
        self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Close now, even while a request waits in another thread (it then fails)."""
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if isinstance(sock, _DeadlineSocket):
            sock.abort()
        with self._lock:
            self._drop()


def _ended(response: http.client.HTTPResponse) -> bool:
    """Whether the response's body is all read, so that its connection can be used again
    (a chunked body's last chunk may still be waiting: one more byte tells)."""
    return response.isclosed() or not response.read(1)


def url_and_headers(target: OtlpTarget) -> tuple[str, dict[str, str] | None]:
    """URL credentials become a Basic authorization header; an explicit one wins."""
    url, authorization = split_credentials(target.url)
    headers = dict(target.headers)
    if authorization and not any(name.lower() == "authorization" for name in headers):
        headers["authorization"] = authorization
    return url, headers or None


def read_ca_file(ca_file: str | None) -> bytes | None:
    """The PEM bytes of an endpoint's CA file; None: the system's CAs."""
    return Path(ca_file).read_bytes() if ca_file else None

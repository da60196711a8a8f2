"""rotel (PyPI), a Rust OTLP collector built on tonic, run on 127.0.0.1 as a peer.

It receives OTLP/gRPC and OTLP/HTTP with its own receive limits and refusal codes
(``OUT_OF_RANGE`` for a gRPC request over ``--otlp-grpc-max-recv-msg-size-mib``) and
forwards what it takes, over OTLP/gRPC, to a receiver of the tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest

from tests.prometheus_server import free_port


def _with_libpython() -> dict[str, str]:
    """The environment, with this interpreter's libpython where the loader finds it: the
    agent links against it (for its Python processors), and a Python built outside the
    system's library directories (pyenv's) keeps it in its own."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [libdir, os.environ.get("LD_LIBRARY_PATH", "")]
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in paths if p)}


def rotel_agent() -> Path:
    rotel = pytest.importorskip("rotel", reason="rotel ships for Linux x86_64 and arm64 only")
    return Path(rotel.__file__).parent / "rotel-agent"


class Rotel:
    """A rotel agent forwarding to ``forward_to_grpc_port``; stops it (only it) on stop()."""

    def __init__(self, forward_to_grpc_port: int, max_receive_mib: int = 1) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                str(rotel_agent()),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.http_port}",
                "--otlp-grpc-max-recv-msg-size-mib",
                str(max_receive_mib),
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                f"http://127.0.0.1:{forward_to_grpc_port}",
                "--otlp-exporter-protocol",
                "grpc",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_with_libpython(),
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        for _ in range(100):  # bounded: 10 s at most
            try:
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("rotel did not listen")

    def stop(self) -> str:
        self.process.terminate()
        output, _ = self.process.communicate(timeout=30)
        return output.decode(errors="replace")

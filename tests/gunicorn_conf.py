"""gunicorn settings for the tests: start the collector in each worker after the fork
(unless the master started it, APP_START=master), and stop it when the worker exits."""

from __future__ import annotations

import os
from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    if os.environ.get("APP_START") != "master":
        from tests.gunicorn_app import collector

        collector.start()


def worker_exit(server: Any, worker: Any) -> None:
    from tests.gunicorn_app import collector

    collector.stop()

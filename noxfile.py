"""The test matrix: the whole suite on every CPython the package supports.

``make test-all`` runs it. Each version gets its own virtual environment with the
package and its test extra installed. A version this machine does not have is
skipped with nox's one line saying so: these machines cannot download
interpreters, and a silent skip would hide a version that never ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = False


def _offer_pyenv_versions() -> None:
    """pyenv's shims answer only for the versions selected; select every installed one,
    so that ``python3.12`` finds pyenv's 3.12 (and a version pyenv lacks stays missing)."""
    pyenv = shutil.which("pyenv")
    if pyenv is None or "PYENV_VERSION" in os.environ:
        return
    listed = subprocess.run(
        [pyenv, "versions", "--bare", "--skip-aliases"], capture_output=True, text=True
    )
    versions = [v for v in listed.stdout.split() if v[:1].isdigit()]
    if versions:
        os.environ["PYENV_VERSION"] = ":".join(versions)


_offer_pyenv_versions()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on one CPython, against the installed package."""
    session.install("-q", ".[test]")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)

"""The client certificate an OTLP endpoint shows for mutual TLS, checked when the config
is built: readable files, a certificate and its own key. No message quotes a key."""

from __future__ import annotations

import ssl


class _Encrypted(Exception):
    """The key asks for a passphrase, which no option gives."""


def _no_passphrase() -> bytes:
    raise _Encrypted


def client_identity_problem(cert: str, key: str) -> str | None:
    """Why ``cert`` and ``key`` cannot be used as a client certificate, or None."""
    for name, path in (("client_cert", cert), ("client_key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            return f"{name} {path} cannot be read: {error.strerror or error}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        return f"client_key {key} is encrypted; give it without a passphrase"
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            return f"client_key {key} is not the key of client_cert {cert}"
        # The reason is OpenSSL's code (PEM_LIB, NO_START_LINE…), never the files' text.
        return (
            f"client_cert {cert} and client_key {key} are not a PEM certificate and its "
            f"key ({error.reason or 'unreadable'})"
        )
    return None


def client_context(context: ssl.SSLContext, cert: str | None, key: str | None) -> None:
    """Show the client certificate on ``context``, when one is given."""
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key, password=_no_passphrase)

"""A throwaway certificate authority and a server certificate for 127.0.0.1 and localhost.

Issued with the extensions a real CA adds (key identifiers, key usage): Python 3.13's
``ssl`` verifies strictly (VERIFY_X509_STRICT) and refuses certificates without them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path
    # A client's certificate and key, issued by the same CA (for mutual TLS).
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(ca: bool) -> x509.KeyUsage:
    """What a real CA sets: a CA signs certificates, a server signs its handshakes."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_tls_files(
    directory: Path, key_identifiers: bool = True, dns_names: tuple[str, ...] = ("localhost",)
) -> TlsFiles:
    """``key_identifiers=False``: certificates as some private CAs issue them, without the
    key identifier extensions that Python 3.13's strict verification asks for.
    ``dns_names``: the server certificate's names; 127.0.0.1 is one of them unless they
    leave out ``localhost`` (a certificate for another host)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_builder = (
        x509.CertificateBuilder()
        .subject_name(_name("telemetry-otel test CA"))
        .issuer_name(_name("telemetry-otel test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
    )
    if key_identifiers:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_builder = ca_builder.add_extension(ski, critical=False)
    ca_cert = ca_builder.sign(ca_key, hashes.SHA256())
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    if "localhost" in dns_names:
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    )
    if key_identifiers:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    files = TlsFiles(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_pair(files.cert_file, files.key_file, cert, key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(_name("telemetry-otel test client"))
        .issuer_name(ca_cert.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(client_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    assert files.client_cert_file is not None and files.client_key_file is not None
    _write_pair(files.client_cert_file, files.client_key_file, client, client_key)
    return files


def _write_pair(cert_file: Path, key_file: Path, cert: x509.Certificate, key: object) -> None:
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

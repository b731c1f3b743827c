"""Test certificates made with ``cryptography``: self-signed signing certificates and a private CA issuing a
loopback TLS server certificate (for JWKS over HTTPS)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(
    private_key: Any,
    cn: str = "signing",
    *,
    issuer_key: Any = None,
    issuer_cn: str | None = None,
    days: int = 30,
    not_before_days: int = -1,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    """An X.509 certificate for ``private_key``'s public key, self-signed unless ``issuer_key`` is given."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn or cn))
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=not_before_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(issuer_key or private_key, hashes.SHA256())  # RSA or EC signers


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def public_pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class LoopbackTls:
    """A private CA and a server certificate for 127.0.0.1, written to ``directory``.

    Attributes:
        ca_file: PEM of the CA certificate (what a client trusts).
        server_context: a server-side :class:`ssl.SSLContext` with the server certificate and key loaded.
    """

    ca_file: Path
    server_context: ssl.SSLContext

    @classmethod
    def create(cls, directory: Path) -> LoopbackTls:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = certificate(ca_key, "authz test CA", ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = certificate(server_key, "127.0.0.1", issuer_key=ca_key, issuer_cn="authz test CA", ip="127.0.0.1")
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(cert_pem(ca_cert))
        chain = directory / "server.pem"
        chain.write_bytes(cert_pem(server_cert))
        key_file = directory / "server.key"
        key_file.write_bytes(server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key_file)
        return cls(ca_file=ca_file, server_context=context)


def rsa_private(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)

"""A self-signed certificate and a scripted AMI server behind TLS, for the AMI client's TLS tests."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.amiserver import AMIServerFactory, reactor, run_until, wait


def with_cryptography(cert: Path, key: Path) -> bool:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return False
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return True


def with_openssl(cert: Path, key: Path) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return True


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "ami.pem", tmp_path / "ami.key"
    if not (with_cryptography(cert, key) or with_openssl(cert, key)):
        pytest.skip("neither the cryptography package nor the openssl command is available")
    return cert, key


@pytest.fixture
def tls_ami(certificate: tuple[Path, Path]) -> Iterator[tuple[AMIServerFactory, int]]:
    """The scripted AMI server behind TLS with the self-signed certificate."""
    from twisted.internet import ssl

    cert, key = certificate
    options = ssl.PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes()).options()
    factory = AMIServerFactory()
    port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")
    yield factory, port.getHost().port
    wait(port.stopListening())
    run_until(lambda: factory.closed == len(factory.connections))  # each test stops its client

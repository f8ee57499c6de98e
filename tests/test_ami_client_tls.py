"""The AMI client over TLS on real loopback TCP (Asterisk's ``tlsenable``): the default connector's TLS setup
with a self-signed certificate made here (the ``cryptography`` package, else the ``openssl`` command; the
tests skip when neither is there, or without pyOpenSSL)."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.interfaces import ISSLTransport

from cti.ami.client import ConnectionLost
from tests.amiserver import AMIServerFactory, reactor, run_until, wait
from tests.test_ami_client import SECRET, Harness

pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL (twisted[tls])")
# The test's TLS server: Twisted's CertificateOptions hands pyOpenSSL X509/PKey objects to pyOpenSSL, which
# now warns about them; that is Twisted's business, not the client's.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def _with_cryptography(cert: Path, key: Path) -> bool:
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


def _with_openssl(cert: Path, key: Path) -> bool:
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
    if not (_with_cryptography(cert, key) or _with_openssl(cert, key)):
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


def test_tls_with_a_trusted_certificate_logs_in(tls_ami: tuple[AMIServerFactory, int],
                                                certificate: tuple[Path, Path]) -> None:
    """With ``tls.ca_file`` naming the server's certificate and ``server_name`` matching it, the client
    logs in over TLS (MD5), actions work, and the server's side of the socket is a TLS transport."""
    factory, port = tls_ami
    cert, _ = certificate
    h = Harness(port, auth="md5", tls={"ca_file": str(cert), "server_name": "localhost"})
    h.start()
    assert h.links == [("pbx1", True, "logged in (Asterisk Call Manager/11.0.0)")]
    assert wait(h.client.send("Ping")).response["Ping"] == "Pong"
    assert ISSLTransport.providedBy(factory.last.transport)
    h.stop()
    run_until(lambda: factory.actions[-1].name == "Logoff")


def test_tls_without_verification_accepts_a_self_signed_certificate(tls_ami: tuple[AMIServerFactory, int]) -> None:
    """``tls.verify: false`` (a lab PBX with a self-signed certificate) connects without a CA file."""
    factory, port = tls_ami
    h = Harness(port, tls={"verify": False})
    h.start()
    assert factory.names()[0] == "Login"
    h.stop()


def test_tls_with_a_name_that_does_not_match_never_sends_the_login(tls_ami: tuple[AMIServerFactory, int],
                                                                   certificate: tuple[Path, Path]) -> None:
    """A certificate for another name fails the handshake: the connection closes before login, the client
    reports it and waits to retry, and no action (no Login, no secret) ever reached the server."""
    factory, port = tls_ami
    cert, _ = certificate
    h = Harness(port, tls={"ca_file": str(cert), "server_name": "pbx.example.org"})
    h.client.start()
    run_until(lambda: h.client.state == "waiting")
    assert isinstance(h.client.last_error, ConnectionLost)
    assert "closed before login" in str(h.client.last_error) and SECRET not in str(h.client.last_error)
    assert [link[1] for link in h.links] == [False]
    assert factory.actions == []
    h.stop()


def test_tls_with_a_missing_ca_file_is_a_failed_attempt(tls_ami: tuple[AMIServerFactory, int],
                                                        tmp_path: Path) -> None:
    """A CA file that cannot be read is reported like a failed connection (and retried), not raised."""
    _, port = tls_ami
    h = Harness(port, tls={"ca_file": str(tmp_path / "missing.pem")})
    h.client.start()
    assert h.client.state == "waiting"
    assert "missing.pem" in str(h.client.last_error)
    h.stop()

"""The AMI client over TLS on real loopback TCP (Asterisk's ``tlsenable``): the default connector's TLS setup
with a self-signed certificate made here (the ``cryptography`` package, else the ``openssl`` command; the
tests skip when neither is there, or without pyOpenSSL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.interfaces import ISSLTransport

from cti.ami.client import ConnectionLost
from tests.amiserver import AMIServerFactory, run_until, wait
from tests.test_ami_client import SECRET, Harness

pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL (twisted[tls])")
# The test's TLS server: Twisted's CertificateOptions hands pyOpenSSL X509/PKey objects to pyOpenSSL, which
# now warns about them; that is Twisted's business, not the client's.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


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

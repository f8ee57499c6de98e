"""TLS for the server's own listeners (the console hub's HTTP and websocket, the operations endpoint): the
``tls: {cert, key}`` settings and the ``ssl.SSLContext`` they make.

``server_context`` reads the files (I/O) and raises ``TlsFilesError`` naming the configuration key, the path
and what is wrong with it (missing, unreadable, not PEM, key not matching the certificate), never the key's
contents. TLS 1.2 at least, the ``ssl`` module's secure defaults for ciphers.
"""

from __future__ import annotations

import os
import ssl

from cti.config_types import ConfigModel, expected


class ServerTls(ConfigModel):
    """A listener's certificate chain and private key (PEM files; the key unencrypted, readable by the server
    only). With it the listener speaks only TLS (https://, wss://)."""

    cert: str = expected("the path of a PEM certificate (chain) file", min_length=1)
    key: str = expected("the path of its PEM private key file", min_length=1)


class TlsFilesError(ValueError):
    """A certificate or key file cannot be used; ``key_path`` is where the configuration names it."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}")
        self.key_path = key_path
        self.message = message


def _readable(path: str, key_path: str) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except FileNotFoundError:
        raise TlsFilesError(key_path, f"{path}: no such file") from None
    except IsADirectoryError:
        raise TlsFilesError(key_path, f"{path}: a directory, expected a PEM file") from None
    except OSError as exc:
        raise TlsFilesError(key_path, f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None


def server_context(tls: ServerTls, where: str) -> ssl.SSLContext:
    """The server-side context for ``tls`` (``where``: its key path in the configuration, for errors)."""
    _readable(tls.cert, f"{where}.cert")
    _readable(tls.key, f"{where}.key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(os.fspath(tls.cert), os.fspath(tls.key))
    except ssl.SSLError as exc:
        reason = exc.reason or exc.__class__.__name__
        if "KEY_VALUES_MISMATCH" in str(reason).upper():
            raise TlsFilesError(f"{where}.key", f"{tls.key}: not the private key of {tls.cert}") from None
        raise TlsFilesError(where, f"{tls.cert} / {tls.key}: not a PEM certificate and key ({reason})") from None
    return context

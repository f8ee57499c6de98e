"""Security rules of issue 19 (docs/security.md, "Rules and their tests"), each over the real thing:

* listeners on loopback unless configured, and TLS (https, wss, /metrics) when a certificate is set: a real
  ``cti serve`` subprocess, reached with ``ssl`` against a self-signed certificate made here;
* unusable certificate or key files are configuration errors naming the key, the file and the fault;
* Redis: password and key prefix settings, a client built from them authenticating to a private
  ``redis-server --requirepass``, the password never shown;
* the console's data exports (statistics snapshot and subscriptions) are supervisors' only, and the audit
  trail cannot be edited from the console (real websocket, production backend: tests/console_stack.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from websockets.sync.client import connect

from agent_console.protocol import REQUEST_TYPES
from centre.audit import AuditStore
from config.load import ConfigError, load_config, load_config_text
from config.security import security_warnings
from tests.console_stack import open_client, run, running
from tests.test_cli_sim_serve import Proc, free_port, write_config

SUPERVISOR, PASSWORD = "sup", "demo-password"  # demo.yaml's supervisor and its documented password


# --- helpers ---------------------------------------------------------------------------------------------

def self_signed(directory: Path, name: str = "cti") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def outward_address() -> str | None:
    """This machine's address on its default route (not loopback), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's source address
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


# --- listeners: loopback and TLS ---------------------------------------------------------------------------

def test_serve_listens_on_loopback_by_default_and_speaks_only_tls_with_a_certificate(tmp_path: Path) -> None:
    """``cti serve`` with ports but no hosts: FastAGI, the hub and /metrics answer on 127.0.0.1 and not on the
    machine's outward address. With ``listen.http.tls`` and ``metrics.tls`` the pages are https, the
    websocket wss (a supervisor logs in over it) and /metrics https; plain HTTP to those ports gets no
    answer."""
    path, doc = write_config(tmp_path)
    cert, key = self_signed(tmp_path)
    ports = {"fastagi": free_port(), "http": free_port(), "metrics": free_port()}
    doc["listen"] = {"fastagi": {"port": ports["fastagi"]},
                     "http": {"port": ports["http"], "tls": {"cert": str(cert), "key": str(key)}}}
    doc["metrics"] = {"port": ports["metrics"], "tls": {"cert": str(cert), "key": str(key)}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    client = ssl.create_default_context(cafile=str(cert))
    server = Proc("serve", str(path))
    try:
        line = server.wait_for(r"centre\.process: cti: FastAGI on", timeout=20)
        assert f"FastAGI on 127.0.0.1:{ports['fastagi']}" in line and f"https://127.0.0.1:{ports['http']}/" in line
        server.wait_for(rf"metrics on https://127\.0\.0\.1:{ports['metrics']}/metrics", timeout=5)
        with urllib.request.urlopen(f"https://127.0.0.1:{ports['http']}/", timeout=5, context=client) as resp:
            assert resp.status == 200 and "wss://" in resp.headers["Content-Security-Policy"]
        with urllib.request.urlopen(f"https://localhost:{ports['metrics']}/metrics", timeout=5,
                                    context=client) as resp:
            assert resp.status == 200 and b"cti_build_info" in resp.read()
        with connect(f"wss://127.0.0.1:{ports['http']}/ws", ssl=client, open_timeout=5,
                     origin=f"https://127.0.0.1:{ports['http']}") as ws:  # type: ignore[arg-type]
            ws.send(json.dumps({"v": 1, "type": "hello", "id": 1, "agent_id": SUPERVISOR, "password": PASSWORD,
                                "role": "supervisor"}))
            hello = json.loads(ws.recv(timeout=10))
            assert hello["type"] == "result" and hello.get("role") == "supervisor", hello
        for port in (ports["http"], ports["metrics"]):  # plain HTTP on a TLS port: no HTTP answer
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(5)
                try:
                    answer = s.recv(100)
                except (TimeoutError, ConnectionResetError):
                    answer = b""
                assert not answer.startswith(b"HTTP/1.1 200"), answer
        outward = outward_address()
        if outward is not None:
            assert all(refused(outward, p) for p in ports.values()), f"a listener answers on {outward}"
        assert not refused("127.0.0.1", ports["fastagi"])
        code, _, err = server.terminate()
        assert code == 0, err[-2000:]
    finally:
        if server.popen.poll() is None:
            server.terminate()


def _tls_config(tmp_path: Path, cert: str, key: str) -> str:
    return yaml.safe_dump({"listen": {"http": {"port": 8080, "tls": {"cert": cert, "key": key}}}})


def test_unusable_certificate_or_key_files_are_configuration_errors(tmp_path: Path) -> None:
    """A missing file, a directory, a file that is not PEM and a key of another certificate each fail the
    configuration (check-config, serve) with the key path, the file and what is wrong; no key bytes shown."""
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = {
        (str(tmp_path / "nope.crt"), str(key)): ("listen.http.tls.cert", "no such file"),
        (str(cert), str(tmp_path)): ("listen.http.tls.key", "a directory"),
        (str(garbage), str(key)): ("listen.http.tls", "not a PEM certificate and key"),
        (str(cert), str(other_key)): ("listen.http.tls.key", f"not the private key of {cert}"),
    }
    secret = key.read_text().splitlines()[1]
    for (c, k), (where, what) in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config_text(_tls_config(tmp_path, c, k), "cti.yaml")
        [issue] = info.value.issues
        assert issue.path == where and what in issue.message, str(issue)
        assert secret not in str(issue)
    assert load_config_text(_tls_config(tmp_path, str(cert), str(key))).listen.http.tls is not None


# --- Redis: password and prefix ----------------------------------------------------------------------------

@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    """A redis-server of this test's own on a free loopback port, with a password."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary")
    port, password = free_port(), "pw-Ø-" + tmp_path.name[-8:]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 10
        for raw in proc.stdout:  # until it says it accepts connections (no sleeping, no polling)
            if b"Ready to accept connections" in raw or time.monotonic() > deadline:
                break
        yield port, password
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_redis_settings_validate_and_a_client_from_them_authenticates(private_redis: tuple[int, str],
                                                                     tmp_path: Path) -> None:
    """``redis.password`` and ``redis.prefix`` validate; the client built from them (``centre.redis_link``)
    is let in by a Redis with ``requirepass``, a wrong password is refused (and /readyz's check is down), and
    the password shows in no error, repr or warning; keys are ``prefix:...``; an inline password in a
    world-readable file is warned about (by key and line, never by value)."""
    from redis.exceptions import AuthenticationError, ResponseError

    from centre.ops_http import Readiness
    from centre.redis_link import redis_client, redis_key, redis_secrets
    from centre.wallboard import Health

    port, password = private_redis
    with pytest.raises(ConfigError) as info:
        load_config_text(yaml.safe_dump({"redis": {"url": "redis://127.0.0.1", "prefix": "a b"}}))
    assert info.value.issues[0].path == "redis.prefix"
    path = tmp_path / "cti.yaml"
    path.write_text(yaml.safe_dump({"redis": {"url": f"redis://127.0.0.1:{port}/0", "password": password,
                                              "prefix": "centre-a"}}))
    path.chmod(0o644)
    cfg = load_config(path)
    assert cfg.redis is not None and password not in repr(cfg) and password not in str(cfg.redis)
    warnings = [str(w) for w in security_warnings(path, cfg)]
    assert any("redis.password" in w for w in warnings) and not any(password in w for w in warnings)
    assert redis_key(cfg.redis, "calls", "42") == "centre-a:calls:42"
    assert redis_secrets(cfg.redis) == (password,)
    wrong = cfg.redis.model_copy(update={"password": None})

    async def body() -> None:
        client = redis_client(cfg.redis, timeout=5)
        try:
            assert await client.ping() is True
            await client.set(redis_key(cfg.redis, "probe"), "1")
            assert await client.keys("*") == [b"centre-a:probe"]
        finally:
            await client.aclose()
        anonymous = redis_client(wrong, timeout=5)
        try:
            with pytest.raises((AuthenticationError, ResponseError)) as refused_info:
                await anonymous.ping()
            assert password not in str(refused_info.value)
        finally:
            await anonymous.aclose()
        # the readiness check (/readyz) built from the settings: up with the password; with a wrong one it is
        # down and its detail names neither password
        bad = "wrong-" + password
        for settings, up in ((cfg.redis, True), (cfg.redis.model_copy(update={"password": SecretStr(bad)}), False)):
            readiness = Readiness(Health(), engine=None, redis_url=None, timeout=5, cache=0, redis=settings)
            try:
                report = await readiness.check()
            finally:
                await readiness.close()
            assert report.redis is not None and report.redis.up is up, report.redis
            assert password not in report.redis.detail and bad not in report.redis.detail

    asyncio.run(body())


def test_sync_client_and_lease_store_authenticate_and_name_no_password(private_redis: tuple[int, str]) -> None:
    """``redis_sync_client`` (the leases' store's client) is let in with the settings' password; without it
    the store's calls fail as ``LeaseStoreDown`` whose message names neither the password nor the URL."""
    from centre.redis_leases import RedisLeases
    from centre.redis_link import redis_key, redis_sync_client
    from config.schema import RedisSettings
    from cti.leases import Lease, LeaseStoreDown

    port, password = private_redis
    settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", password=SecretStr(password), prefix="centre-a")
    client = redis_sync_client(settings, timeout=5)
    try:
        store = RedisLeases(client, redis_key(settings, "lease"))
        assert store.acquire("ami:pbx1", "n1", 0.0, 10.0) == Lease("ami:pbx1", "n1", 10.0, 1)
        assert client.keys("*") == [b"centre-a:lease:ami:pbx1"]
    finally:
        client.close()
    anonymous = redis_sync_client(settings.model_copy(update={"password": None}), timeout=5)
    try:
        with pytest.raises(LeaseStoreDown) as refused:
            RedisLeases(anonymous, "centre-a:lease").holder("ami:pbx1", 1.0)
        assert password not in str(refused.value) and str(port) not in str(refused.value)
    finally:
        anonymous.close()


# --- console: exports are supervisors', the audit trail is append-only --------------------------------------

def test_statistics_exports_are_refused_to_agents_and_the_audit_trail_cannot_be_edited() -> None:
    """An agent's console may not take a statistics snapshot, subscribe or unsubscribe (forbidden). No console
    request type touches the audit trail: made-up ones (``audit_delete``, ``audit_update``) and an audited
    action carrying extra fields (``id`` of a row, ``result``) are refused, and the rows stay as written;
    ``AuditStore`` has no update or delete."""
    assert not any("audit" in t for t in REQUEST_TYPES)
    assert {m for m in vars(AuditStore) if not m.startswith("_")} == {"append", "entries"}

    async def body() -> None:
        async with running() as stack:
            agent = await open_client(stack, "1001")
            for kind, fields in (("snapshot", {}), ("subscribe", {"topics": ["queue:sales"]}),
                                 ("unsubscribe", {"topics": ["queue:sales"]})):
                reply = await agent.request(kind, **fields)
                assert reply["type"] == "error" and reply["error_id"] == "forbidden", reply
            sup = await open_client(stack, "sup", role="supervisor")
            ok = await sup.request("force_not_ready", agent_id="1002", reason="meeting")
            assert ok["type"] != "error" or ok["error_id"] != "forbidden", ok
            assert stack.server.database is not None
            store = AuditStore(stack.server.database.engine)
            before = store.entries()
            assert [e.action for e in before] == ["force_not_ready"]
            for kind, fields in (("audit_delete", {"row": 1}), ("audit_update", {"row": 1, "result": "ok"}),
                                 ("force_logout", {"agent_id": "1002", "audit_id": 1}),
                                 ("force_not_ready", {"agent_id": "1002", "result": "refused"})):
                reply = await sup.request(kind, **fields)
                assert reply["type"] == "error" and reply["error_id"] != "forbidden", (kind, reply)
            assert store.entries() == before

    run(body)

"""The ``metrics:`` section (the operations endpoint): optional, loopback by default, every mistake named with
file, line, key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.load import ConfigError, load_config, load_config_text
from config.security import security_warnings


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "ops.yaml")
    return [str(i) for i in info.value.issues]


def test_no_section_no_endpoint_and_an_empty_one_takes_the_defaults() -> None:
    assert load_config_text("log: {level: INFO}\n").metrics is None
    m = load_config_text("metrics: {}\n").metrics
    assert m is not None and (m.host, m.port, m.check_timeout, m.check_cache) == ("127.0.0.1", 9188, 2.0, 1.0)
    m = load_config_text("metrics: {host: 0.0.0.0, port: 0, check_timeout: 0.5, check_cache: 0}\n").metrics
    assert m is not None and (m.host, m.port, m.check_timeout, m.check_cache) == ("0.0.0.0", 0, 0.5, 0.0)


def test_bad_values_say_what_was_expected_where() -> None:
    text = "metrics:\n  host: 'my host'\n  port: 70000\n  check_timeout: 0\n  check_cache: -1\n  prot: 1\n"
    assert issues(text) == [
        'ops.yaml:2 metrics.host: expected an address to listen on, such as 127.0.0.1 or 0.0.0.0, got "my host"',
        "ops.yaml:3 metrics.port: expected an integer 0-65535 (0: any free port), got 70000",
        "ops.yaml:4 metrics.check_timeout: expected a number of seconds > 0 (a readiness check's wait), got 0",
        "ops.yaml:5 metrics.check_cache: expected a number of seconds >= 0 (how long a check's result is reused), "
        "got -1",
        "ops.yaml:6 metrics.prot: unknown key (did you mean 'port'?)",
    ]


def test_the_port_must_not_be_one_the_server_already_listens_on() -> None:
    text = "listen:\n  http: {host: 127.0.0.1, port: 8080}\nmetrics:\n  port: 8080\n"
    assert issues(text) == ["ops.yaml:4 metrics.port: port 8080 is listen.http's already: choose another"]
    text = "listen:\n  fastagi: {host: 0.0.0.0, port: 4573}\nmetrics:\n  port: 4573\n"
    assert issues(text) == ["ops.yaml:4 metrics.port: port 4573 is listen.fastagi's already: choose another"]
    # another address, or any free port: fine
    assert load_config_text("listen:\n  http: {host: 10.0.0.2, port: 9188}\nmetrics: {}\n").metrics is not None
    assert load_config_text("listen:\n  http: {port: 8080}\nmetrics: {port: 0}\n").metrics is not None


def test_an_endpoint_beyond_loopback_is_warned_about_without_echoing_anything_secret(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    path.write_text("metrics: {host: 0.0.0.0}\n")
    path.chmod(0o600)
    (warning,) = security_warnings(path, load_config(path))
    assert str(warning).startswith(f"{path} metrics.host: warning: /metrics, /healthz and /readyz have no "
                                   "authentication and listen on 0.0.0.0")
    path.write_text("metrics: {}\n")
    assert security_warnings(path, load_config(path)) == []

"""Settings of one Asterisk connection over AMI (the ``asterisk:`` list of the configuration); the
AMI client reads them. No I/O."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from cti.config_types import ConfigModel, Port, PositiveSeconds, expected


class TlsSettings(ConfigModel):
    """TLS to the AMI port (Asterisk's ``tlsenable`` in manager.conf, usually port 5039)."""

    enabled: bool = True
    ca_file: str | None = None
    verify: bool = True
    server_name: str | None = None


class AsteriskServer(ConfigModel):
    """One Asterisk PBX reached over AMI."""

    name: str = expected("a short name for this PBX", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = "127.0.0.1"
    port: Port = 5038
    username: str = expected("the AMI user of manager.conf", min_length=1)
    secret: SecretStr = expected("the AMI secret (use ${ENV_VAR} to keep it out of the file)")
    auth: Literal["md5", "plain"] = "md5"
    tls: TlsSettings | None = None
    connect_timeout: PositiveSeconds = 10.0
    action_timeout: PositiveSeconds = 10.0
    ping_interval: PositiveSeconds = 20.0
    ping_timeout: PositiveSeconds = 10.0
    reconnect_initial: PositiveSeconds = 1.0
    reconnect_max: PositiveSeconds = 60.0

"""Wires one simulated Asterisk from the configuration: PBX + AMI server + FastAGI client + people.
``build_sim`` is pure wiring (any IReactorTime clock, injected FastAGI connector); ``listen``
attaches the AMI server to a reactor. Used by ``cti sim`` and ``cti demo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime

from config.schema import CtiConfig
from cti.ami.settings import AsteriskServer
from cti.contract import CTI_FASTAGI
from sim.amd import SHIPPED_AMD_CONF, AmdSettings, load_amd_conf
from sim.ami_read_classes import manager_conf_read
from sim.ami_server import AMIServer, AMIServerFactory, AmiUser
from sim.dialplan import DEFAULT_DIALPLAN, load_dialplan, load_dialplans
from sim.fastagi_client import Connector, FastAGIClient
from sim.pbx import Pbx
from sim.people import AgentPhones, InboundTraffic, OutboundCustomers, root_rng
from sim.traffic import PeopleFarEnds, TrafficDriver

DEFAULT_USER = ("cti", "cti-secret")
SHIPPED_MANAGER_CONF = Path(__file__).resolve().parent.parent / "config" / "asterisk" / "manager_cti.conf"


@dataclass(slots=True)
class SimRuntime:
    """Everything one simulated PBX is made of."""

    clock: IReactorTime
    pbx: Pbx
    ami: AMIServer
    agi: FastAGIClient
    driver: TrafficDriver
    server: AsteriskServer | None

    def stop(self) -> None:
        self.driver.stop()
        self.ami.close()


def pick_server(cfg: CtiConfig, name: str | None = None) -> AsteriskServer | None:
    """The ``asterisk:`` entry to impersonate (by name, else the first); None if there is none."""
    for server in cfg.asterisk:
        if name is None or server.name == name:
            return server
    if name is not None:
        raise ValueError(f"no asterisk server named {name!r} in the configuration")
    return None


def build_sim(cfg: CtiConfig, clock: IReactorTime, *, agi_connect: Connector | None = None,
              dialplan: Path | list[Path] | None = None, pbx_name: str | None = None, seed: int | None = None,
              inbound: bool = True, speed: float = 1.0) -> SimRuntime:
    """Build (not start) a simulated PBX for ``cfg``: the AMI users of the chosen ``asterisk:`` entry,
    FastAGI to ``listen.fastagi``, people from ``sim:``. ``speed``: how much faster than real time
    ``clock`` runs against a live server (the FastAGI connect timeout is a network wait: it stays in
    real seconds, or at x20 a 2 s timeout would give a live server 0.1 s). ``dialplan``: a file, or
    several merged as ``#include`` lines would (default: sim/dialplan.yaml, the shipped dialplan)."""
    settings = cfg.sim if seed is None else cfg.sim.model_copy(update={"seed": seed})
    if speed != 1.0:
        agi_settings = settings.agi.model_copy(update={"connect_timeout_s": settings.agi.connect_timeout_s * speed})
        settings = settings.model_copy(update={"agi": agi_settings})
    rng = root_rng(settings)
    far = PeopleFarEnds(AgentPhones(settings, rng), OutboundCustomers(settings, rng))
    agi = FastAGIClient(clock, agi_connect, settings=settings.agi)
    if isinstance(dialplan, list | tuple):
        plan = load_dialplans(list(dialplan))
    else:
        plan = load_dialplan(dialplan or DEFAULT_DIALPLAN)
    # A PBX installed as docs/asterisk.md says: the amd.conf we ship; one AstDB for AMI, DB() and AGI.
    amd = load_amd_conf() if SHIPPED_AMD_CONF.exists() else AmdSettings()
    pbx = Pbx(clock, plan, far_ends=far, agi=agi, seed=settings.seed, amd=amd, astdb=agi.db)
    pbx.globals[CTI_FASTAGI] = f"agi://{cfg.listen.fastagi.host}:{cfg.listen.fastagi.port}"
    server = pick_server(cfg, pbx_name)
    user = (server.username, server.secret.get_secret_value()) if server is not None else DEFAULT_USER
    # The read classes the shipped manager_cti.conf gives that user (no "agi": no AGIExec events).
    read = manager_conf_read(SHIPPED_MANAGER_CONF.read_text(encoding="utf-8"), user[0]) \
        if SHIPPED_MANAGER_CONF.exists() else None
    ami = AMIServer(pbx, [AmiUser(user[0], user[1], read)])
    traffic = InboundTraffic(settings, rng) if inbound else None
    driver = TrafficDriver(pbx, traffic, far)
    return SimRuntime(clock, pbx, ami, agi, driver, server)


def listen(runtime: SimRuntime, reactor: IReactorTCP, host: str | None = None,
           port: int | None = None) -> IListeningPort:
    """Serve the AMI on the chosen server's host/port (or the given ones) with a real TCP socket."""
    server = runtime.server
    return reactor.listenTCP(port if port is not None else (server.port if server else 5038),
                             AMIServerFactory(runtime.ami),
                             interface=host or (server.host if server else "127.0.0.1"))

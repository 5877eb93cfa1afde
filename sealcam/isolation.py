"""The trust zones of BRIEF §4 as data: which service reaches which bus, which network, which secrets, devices.

Written once here and read by everything that enforces it: the compose file and the k8s NetworkPolicies are
checked against `ZONES` (tests/test_deploy*.py), `sealcam up --sandbox` builds its bubblewrap binds from it,
and `check_acl` ties it to the Redis ACL users of `sealcam/bus/acl.py` (a service has an ACL user on a bus
exactly when its zone names that bus).

    service   buses           network  secrets                              devices  sees plaintext
    recorder  plain           camera   camera_password                      yes      yes
    motion    plain           none     -                                    no       yes
    crypto    plain, sealed   none     hub_signing_key, hub_passphrase      no       yes
    uploader  sealed          egress   storage_credentials                  no       no
    watchdog  sealed          egress   alert_urls                           no       no

Each service also holds its own bus ACL password per bus it uses (`bus_secrets`). Names here are stable: other
code keys on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .bus import acl, names

if TYPE_CHECKING:
    from .config.models import Config

Network = Literal["none", "camera", "egress"]
BUSES: tuple[str, ...] = (names.PLAIN, names.SEALED)
NETWORKS: tuple[str, ...] = ("none", "camera", "egress")
#: Kinds of secret a zone may hold (bus ACL passwords are per service and come from `bus_secrets`).
SECRET_KINDS: tuple[str, ...] = ("camera_password", "hub_signing_key", "hub_passphrase", "storage_credentials",
                                 "alert_urls")


@dataclass(frozen=True)
class Zone:
    service: str
    buses: frozenset[str]  # subset of BUSES
    network: Network  # none: no interface at all; camera: the camera LAN only; egress: the internet
    secrets: frozenset[str]  # subset of SECRET_KINDS
    devices: bool  # may be given camera device nodes (/dev/videoN)
    plaintext: bool  # handles unencrypted video (must then have no egress)


def _zone(service: str, buses: tuple[str, ...], network: Network, secrets: tuple[str, ...] = (),
          devices: bool = False, plaintext: bool = False) -> Zone:
    return Zone(service, frozenset(buses), network, frozenset(secrets), devices, plaintext)


ZONES: dict[str, Zone] = {
    "recorder": _zone("recorder", (names.PLAIN,), "camera", ("camera_password",), devices=True, plaintext=True),
    "motion": _zone("motion", (names.PLAIN,), "none", plaintext=True),
    "crypto": _zone("crypto", (names.PLAIN, names.SEALED), "none", ("hub_signing_key", "hub_passphrase"),
                    plaintext=True),
    "uploader": _zone("uploader", (names.SEALED,), "egress", ("storage_credentials",)),
    "watchdog": _zone("watchdog", (names.SEALED,), "egress", ("alert_urls",)),
}


def bus_secrets(service: str) -> frozenset[str]:
    """The ACL password files `service` holds: `<bus>-<service>.pass` for each bus of its zone."""
    return frozenset(acl.password_file_name(bus, service) for bus in ZONES[service].buses)


def allowed_secrets(service: str) -> frozenset[str]:
    """Every secret name `service` may hold: its zone's kinds plus its own bus passwords."""
    return ZONES[service].secrets | bus_secrets(service)


def services_on(bus: str) -> frozenset[str]:
    return frozenset(s for s, z in ZONES.items() if bus in z.buses)


def check_zones(zones: Mapping[str, Zone] = ZONES) -> list[str]:
    """The rules the graph itself must keep (BRIEF §4); [] when it does."""
    out: list[str] = []
    for svc, z in zones.items():
        if z.service != svc:
            out.append(f"{svc}: zone names service {z.service!r}")
        if not z.buses <= set(BUSES) or z.network not in NETWORKS or not z.secrets <= set(SECRET_KINDS):
            out.append(f"{svc}: unknown bus, network or secret kind")
        if z.network == "egress" and (z.plaintext or names.PLAIN in z.buses):
            out.append(f"{svc}: has egress and reaches plaintext")
        if {"hub_signing_key", "hub_passphrase"} & z.secrets and z.network != "none":
            out.append(f"{svc}: holds the hub key and has a network")
        if z.devices and z.network == "egress":
            out.append(f"{svc}: has camera devices and egress")
    return out


def check_acl(access: Mapping[str, Mapping[str, Any]] = acl.ACCESS, zones: Mapping[str, Zone] = ZONES) -> list[str]:
    """A service has an ACL user on a bus iff its zone gives it that bus; [] when they agree."""
    out: list[str] = []
    for bus in sorted(set(BUSES) | set(access)):
        users = set(access.get(bus, {}))
        for svc in sorted(users - {s for s, z in zones.items() if bus in z.buses}):
            out.append(f"{svc}: has an ACL user on the {bus} bus its zone does not give it")
        for svc in sorted({s for s, z in zones.items() if bus in z.buses} - users):
            out.append(f"{svc}: its zone gives it the {bus} bus but it has no ACL user there")
    return out


def config_secrets(config: Config) -> dict[Path, str]:
    """Each secret *file* a config names -> its kind (SECRET_KINDS) or bus password name (`plain-motion.pass`).
    `env:` secrets are not files and are left out."""
    out: dict[Path, str] = {}

    def add(ref: Any, kind: str) -> None:
        if ref is not None and ref.path is not None:
            out[ref.path] = kind

    for cam in config.cameras:
        for inp in cam.inputs:
            add(inp.password_file, "camera_password")
    add(config.hub.signing_key_file, "hub_signing_key")
    add(config.hub.passphrase_file, "hub_passphrase")
    for backend in config.storage:
        for field in type(backend).model_fields:
            if field.endswith("_file") and field != "known_hosts_file":
                add(getattr(backend, field), "storage_credentials")
    for field in type(config.alerts).model_fields:
        if field.endswith("_file"):
            add(getattr(config.alerts, field), "alert_urls")
    if config.buses.acl_dir is not None:
        for bus, svc in acl.pairs():
            name = acl.password_file_name(bus, svc)
            out[config.buses.acl_dir / name] = name
    return out


def config_devices(config: Config) -> list[Path]:
    """The device nodes (v4l2:///dev/videoN inputs) the recorder needs, in config order, without repeats."""
    out: list[Path] = []
    for cam in config.cameras:
        for inp in cam.inputs:
            if inp.url.startswith("v4l2://"):
                dev = Path(inp.url[len("v4l2://"):].split("?", 1)[0])
                if dev not in out:
                    out.append(dev)
    return out

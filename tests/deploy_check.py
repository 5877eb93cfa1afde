"""Checks a resolved Docker Compose model (`docker compose config --format json`) against sealcam.isolation.

`check_compose(model, config)` returns violations as sentences naming the compose service; [] means the file
keeps the isolation graph: who mounts which bus socket volume, who has a network and which, who holds which
secret (classified by the config: the file each config key names), who gets devices, and the hardening every
container must have. Nothing here re-types the graph: it comes from `ZONES`, the buses' socket paths from the
bus servers' own command lines, secret kinds from `isolation.config_secrets`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from sealcam.isolation import ZONES, allowed_secrets, config_secrets

#: Compose service names of the bus servers (deployment naming, not part of the graph).
BUS_SERVERS = {"plain": "redis-plain", "sealed": "redis-sealed"}
CONFIG_TARGET = "/etc/sealcam/config.yml"
_DOCKERFILE = re.compile(r"^services/([a-z]+)/Dockerfile(\.[a-z0-9]+)?$")


def zone_of(name: str, svc: dict[str, Any]) -> str | None:
    """The zone a compose service runs: from its Dockerfile (services/<zone>/Dockerfile*), else its image
    (sealcam/<zone>:tag); None for a bus server."""
    if name in BUS_SERVERS.values():
        return None
    m = _DOCKERFILE.match((svc.get("build") or {}).get("dockerfile", ""))
    if m:
        return m.group(1)
    m = re.match(r"^sealcam/([a-z]+)(:|$)", svc.get("image", ""))
    return m.group(1) if m else "?"


def secret_path(entry: dict[str, Any]) -> str:
    target = entry.get("target") or entry["source"]
    return target if target.startswith("/") else f"/run/secrets/{target}"


def _arg(command: list[str] | None, flag: str) -> str | None:
    cmd = command or []
    return cmd[cmd.index(flag) + 1] if flag in cmd and cmd.index(flag) + 1 < len(cmd) else None


def _args(command: list[str] | None, flag: str) -> list[str]:
    cmd = command or []
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == flag]


def mounts(svc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from svc.get("volumes") or []


def bus_volumes(model: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """bus -> the volume its server puts its Unix socket on (from `--unixsocket` in its command)."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for bus, name in BUS_SERVERS.items():
        svc = model["services"].get(name)
        if svc is None:
            problems.append(f"{name}: the {bus} bus server is missing")
            continue
        sock = _arg(svc.get("command"), "--unixsocket")
        vols = [m["source"] for m in mounts(svc) if sock and m["type"] == "volume"
                and PurePosixPath(sock).parent == PurePosixPath(m["target"])]
        if not vols:
            problems.append(f"{name}: its --unixsocket is not on a volume")
            continue
        out[bus] = vols[0]
    return out, problems


def _network_class(model: dict[str, Any], net: str) -> str:
    """camera: no route out of the host (internal) or a LAN segment (macvlan/ipvlan); egress otherwise."""
    spec = (model.get("networks") or {}).get(net) or {}
    if spec.get("internal") or spec.get("driver") in ("macvlan", "ipvlan"):
        return "camera"
    return "egress"


def _networks(svc: dict[str, Any]) -> set[str]:
    return set(svc.get("networks") or {})


def check_hardening(name: str, svc: dict[str, Any], sealcam: bool) -> list[str]:
    out = []
    if svc.get("read_only") is not True:
        out.append(f"{name}: root file system is not read-only")
    if "ALL" not in (svc.get("cap_drop") or []) or svc.get("cap_add"):
        out.append(f"{name}: capabilities are not all dropped")
    if svc.get("privileged"):
        out.append(f"{name}: privileged")
    if "no-new-privileges:true" not in (svc.get("security_opt") or []):
        out.append(f"{name}: no-new-privileges is not set")
    user = str(svc.get("user") or "")
    if not user or user.split(":")[0] in ("0", "root"):
        out.append(f"{name}: runs as root")
    log = svc.get("logging") or {}
    if log.get("driver") != "json-file" or "max-size" not in (log.get("options") or {}):
        out.append(f"{name}: logs are not json-file with rotation")
    if sealcam and not svc.get("tmpfs"):
        out.append(f"{name}: no tmpfs for /tmp on a read-only root")
    for key in ("pid", "ipc", "userns_mode", "uts"):
        if svc.get(key) == "host":
            out.append(f"{name}: shares the host's {key} namespace")
    if svc.get("network_mode") == "host":
        out.append(f"{name}: uses the host's network")
    if svc.get("ports"):
        out.append(f"{name}: publishes ports")
    return out


def check_compose(model: dict[str, Any], config: Any) -> list[str]:  # noqa: C901 - one rule per block
    out: list[str] = []
    services: dict[str, dict[str, Any]] = model.get("services") or {}
    bus_vol, problems = bus_volumes(model)
    out += problems
    kinds = {str(p): k for p, k in config_secrets(config).items()}
    sockets = {bus: urlparse(getattr(config.buses, f"{bus}_url") or "").path for bus in BUS_SERVERS}
    zones_seen: set[str] = set()
    shared: dict[str, set[str]] = {}  # network -> services on it
    volume_users: dict[str, set[str]] = {}

    for name, svc in sorted(services.items()):
        zone = zone_of(name, svc)
        out += check_hardening(name, svc, sealcam=zone is not None)
        for net in _networks(svc):
            shared.setdefault(net, set()).add(name)
        for m in mounts(svc):
            if m["type"] == "volume":
                volume_users.setdefault(m["source"], set()).add(name)
        held = [secret_path(s) for s in svc.get("secrets") or []]
        if zone is None:  # a bus server: no network, only its own aclfile
            bus = next(b for b, n in BUS_SERVERS.items() if n == name)
            if svc.get("network_mode") != "none":
                out.append(f"{name}: the {bus} bus server has a network")
            aclfile = _arg(svc.get("command"), "--aclfile")
            if not aclfile or held != [aclfile]:
                out.append(f"{name}: must hold exactly its aclfile, holds {held}")
            if bus == "plain" and (_arg(svc.get("command"), "--appendonly") != "no"
                                   or _arg(svc.get("command"), "--save") != ""):
                out.append(f"{name}: the plain bus persists to disk")
            if bus == "plain" and any(m["source"] != bus_vol.get("plain") for m in mounts(svc)):
                out.append(f"{name}: the plain bus mounts more than its socket volume")
            continue
        if zone not in ZONES:
            out.append(f"{name}: runs no known service (zone {zone!r})")
            continue
        zones_seen.add(zone)
        z = ZONES[zone]

        # buses: reachable iff the socket volume is mounted, and mounted where the config looks for the socket
        for bus, vol in bus_vol.items():
            targets = [m["target"] for m in mounts(svc) if m["type"] == "volume" and m["source"] == vol]
            if targets and bus not in z.buses:
                out.append(f"{name}: mounts the {bus} bus socket volume ({zone} may not reach the {bus} bus)")
            if bus in z.buses and not targets:
                out.append(f"{name}: does not mount the {bus} bus socket volume it needs")
            if targets and PurePosixPath(sockets[bus]).parent not in [PurePosixPath(t) for t in targets]:
                out.append(f"{name}: the config's {bus} socket {sockets[bus]} is not where it mounts the volume")

        # network
        mode, nets = svc.get("network_mode"), _networks(svc)
        if z.network == "none" and (mode != "none" or nets):
            out.append(f"{name}: has a network ({zone} must have none)")
        classes = {_network_class(model, n) for n in nets} | ({"egress"} if not nets and mode != "none" else set())
        if z.network == "camera" and "egress" in classes:
            out.append(f"{name}: is on an egress network ({zone} may reach the camera LAN only)")

        # secrets, classified by what the config reads from each path
        allowed = allowed_secrets(zone)
        for path in held:
            kind = kinds.get(path)
            if kind is None:
                out.append(f"{name}: holds {path}, which the config does not name")
            elif kind not in allowed:
                out.append(f"{name}: holds {kind} ({path}), which {zone} must not")
        out += _missing_secrets(name, zone, svc, config, kinds, set(held))

        # devices
        if svc.get("devices") and not z.devices:
            out.append(f"{name}: is given devices ({zone} must have none)")

        cfgs = [c for c in svc.get("configs") or [] if c.get("target") == CONFIG_TARGET]
        if len(cfgs) != 1:
            out.append(f"{name}: does not mount the config at {CONFIG_TARGET}")

    for zone in sorted(set(ZONES) - zones_seen):
        out.append(f"{zone}: no compose service runs it")
    out += _sharing(services, shared, volume_users, set(bus_vol.values()))
    return out


def _missing_secrets(name: str, zone: str, svc: dict[str, Any], config: Any, kinds: dict[str, str],
                     held: set[str]) -> list[str]:
    """What the service will fail without: its bus passwords, and each secret of its kinds the config names
    (camera passwords only of the cameras this recorder records: `--camera`, default all)."""
    out = []
    cams = set(_args(svc.get("command"), "--camera")) or {c.id for c in config.cameras}
    if "camera_password" not in ZONES[zone].secrets:
        cams = set()
    needed = set()
    for cam in config.cameras:
        for inp in cam.inputs:
            if inp.password_file is not None and inp.password_file.path is not None and cam.id in cams:
                needed.add(str(inp.password_file.path))
    for path, kind in kinds.items():
        if kind in allowed_secrets(zone) and kind != "camera_password":
            if kind.endswith(".pass") or kind in ZONES[zone].secrets:
                needed.add(path)
    for path in sorted(needed - held):
        out.append(f"{name}: lacks {kinds.get(path)} ({path}) that the config gives it")
    for path in sorted(p for p in held if kinds.get(p) == "camera_password" and p not in needed):
        out.append(f"{name}: holds the camera password {path} of a camera it does not record")
    return out


def _sharing(services: dict[str, dict[str, Any]], shared: dict[str, set[str]], volume_users: dict[str, set[str]],
             bus_volumes_: set[str]) -> list[str]:
    """No network or (non-bus) volume joins a plaintext service and a non-plaintext one."""
    out = []

    def plain(name: str) -> bool:
        zone = zone_of(name, services[name])
        return zone is None or (zone in ZONES and ZONES[zone].plaintext)

    for net, users in sorted(shared.items()):
        if len({plain(u) for u in users}) > 1:
            out.append(f"network {net}: joins plaintext and internet-side services {sorted(users)}")
    for vol, users in sorted(volume_users.items()):
        if vol not in bus_volumes_ and len({plain(u) for u in users}) > 1:
            out.append(f"volume {vol}: shared by plaintext and internet-side services {sorted(users)}")
    return out

"""What each service may see of the config: its own section and its own secrets, nothing else (BRIEF §4).

The recorder gets camera inputs (with camera credentials) and the plain bus; motion gets camera ids, their
motion settings and the plain bus; crypto gets the hub key, recipients, recording and both buses; the uploader
gets storage, retention, data_dir and the sealed bus (never the hub key or recipients); the watchdog gets alerts, camera
ids, recording cadence and the sealed bus. With buses.acl_dir set, each gets its own ACL user per bus it uses
(`*_auth`: user name and password file; never another service's file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..bus.client import BusAuth
    from .models import Config

SERVICES = ("recorder", "motion", "crypto", "uploader", "watchdog")


def bus_auth(config: Config, bus: str, service: str) -> BusAuth | None:
    """`service`'s ACL user on `bus` (its password file under buses.acl_dir), or None without ACLs."""
    from ..bus.acl import password_file_name
    from ..bus.client import BusAuth
    from .secrets import SecretRef

    if config.buses.acl_dir is None:
        return None
    return BusAuth(service, SecretRef.file(config.buses.acl_dir / password_file_name(bus, service)))


def section_for(config: Config, service: str) -> dict[str, Any]:
    c = config
    if service == "recorder":
        return {
            "cameras": {cam.id: tuple(cam.inputs) for cam in c.cameras},
            "recording": c.recording,
            "plain_bus": c.buses.plain_url,
            "plain_auth": bus_auth(c, "plain", service),
        }
    if service == "motion":
        from .motion import effective_motion

        # Per camera: its effective motion settings and whether the recorder publishes a separate detect-only
        # input (plain:detect:CAM) — never the input URLs or their credentials.
        return {"camera_ids": tuple(cam.id for cam in c.cameras),
                "motion": {cam.id: effective_motion(c, cam) for cam in c.cameras},
                "objects": {cam.id: c.objects_for(cam.id) for cam in c.cameras},
                "detect_only": {cam.id: "record" not in cam.detect_input.roles for cam in c.cameras},
                "plain_bus": c.buses.plain_url, "plain_auth": bus_auth(c, "plain", service)}
    if service == "crypto":
        return {
            "hub": c.hub,
            "recipients": {cam.id: tuple(cam.recipients or ()) for cam in c.cameras},
            "recording": c.recording,
            "camera_recording": {cam.id: c.recording_for(cam.id) for cam in c.cameras},
            "plain_bus": c.buses.plain_url,
            "plain_auth": bus_auth(c, "plain", service),
            "sealed_bus": c.buses.sealed_url,
            "sealed_auth": bus_auth(c, "sealed", service),
        }
    if service == "uploader":
        return {
            "storage": tuple(c.storage),
            "retention": c.retention,
            "data_dir": c.data_dir,
            "sealed_bus": c.buses.sealed_url,
            "sealed_auth": bus_auth(c, "sealed", service),
        }
    if service == "watchdog":
        return {
            "alerts": c.alerts,
            "camera_ids": tuple(cam.id for cam in c.cameras),
            "recording": c.recording,
            "camera_recording": {cam.id: c.recording_for(cam.id) for cam in c.cameras},
            "data_dir": c.data_dir,
            "sealed_bus": c.buses.sealed_url,
            "sealed_auth": bus_auth(c, "sealed", service),
        }
    raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")

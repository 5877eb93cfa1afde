"""What each service may see of the config: its own section and its own secrets, nothing else (BRIEF §4).

The recorder gets camera inputs (with camera credentials) and the plain bus; motion gets camera ids and the
plain bus; crypto gets the hub key, recipients, recording and both buses; the uploader gets storage,
retention, data_dir and the sealed bus (never the hub key or recipients); the watchdog gets alerts, camera
ids, recording cadence and the sealed bus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Config

SERVICES = ("recorder", "motion", "crypto", "uploader", "watchdog")


def section_for(config: Config, service: str) -> dict[str, Any]:
    c = config
    if service == "recorder":
        return {
            "cameras": {cam.id: tuple(cam.inputs) for cam in c.cameras},
            "recording": c.recording,
            "plain_bus": c.buses.plain_url,
        }
    if service == "motion":
        return {"camera_ids": tuple(cam.id for cam in c.cameras), "plain_bus": c.buses.plain_url}
    if service == "crypto":
        return {
            "hub": c.hub,
            "recipients": {cam.id: tuple(cam.recipients or ()) for cam in c.cameras},
            "recording": c.recording,
            "plain_bus": c.buses.plain_url,
            "sealed_bus": c.buses.sealed_url,
        }
    if service == "uploader":
        return {
            "storage": tuple(c.storage),
            "retention": c.retention,
            "data_dir": c.data_dir,
            "sealed_bus": c.buses.sealed_url,
        }
    if service == "watchdog":
        return {
            "alerts": c.alerts,
            "camera_ids": tuple(cam.id for cam in c.cameras),
            "recording": c.recording,
            "data_dir": c.data_dir,
            "sealed_bus": c.buses.sealed_url,
        }
    raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")

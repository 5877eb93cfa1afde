#!/usr/bin/env python3
"""Container health check: each bus this service uses answers PING when asked as the service's own ACL user.

Run inside the service's container (the Dockerfile's HEALTHCHECK, the k8s liveness probe):

    python /usr/local/lib/sealcam/healthcheck.py        # SEALCAM_SERVICE, SEALCAM_CONFIG from the image/env

Exit 0 healthy, 1 not (the reason on stderr, never a secret). It checks what the container can check without
more rights than the service has: the config loads, the service's own password files are readable, and its
buses (from sealcam.isolation, so only the ones its zone gives it) accept its login. Whether cameras produce
footage is the watchdog's job, not a reason to restart a container.
"""

from __future__ import annotations

import os
import sys

import redis

from sealcam.bus.client import BusUrlError, connect
from sealcam.config import ConfigError, SecretError, load_config
from sealcam.isolation import ZONES


def check(service: str, config_path: str) -> str | None:
    """None when healthy, else why not."""
    if service not in ZONES:
        return f"SEALCAM_SERVICE={service!r} is not one of {', '.join(ZONES)}"
    try:
        section = load_config(config_path).section_for(service)
        for bus in sorted(ZONES[service].buses):
            url = section.get(f"{bus}_bus")
            if not url:
                return f"{service}: buses.{bus}_url is not set in {config_path}"
            connect(url, name=f"{service}-health", auth=section.get(f"{bus}_auth"), socket_timeout=3.0).ping()
    except (ConfigError, SecretError, BusUrlError, redis.RedisError, OSError) as exc:
        return f"{service}: {type(exc).__name__}: {exc}"
    return None


def main() -> int:
    problem = check(os.environ.get("SEALCAM_SERVICE", ""), os.environ.get("SEALCAM_CONFIG", "/etc/sealcam/config.yml"))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

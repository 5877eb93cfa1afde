"""Retention decisions (pure): what to delete locally by age and size quota, and remotely by age.

Ages come from the object name's coarse hour (`.../<seq>-YYYYMMDDHH.seal`, see sealcam.bus.names.object_name),
else the spool file's mtime. Locally only complete objects are ever deleted; the size quota removes the oldest
complete objects that every backend already holds. Remotely, a backend that cannot delete (WORM, write-only
credentials) is skipped: its bucket's lifecycle owns retention.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping

from .spool import SpoolEntry

_HOUR = re.compile(r"-([0-9]{10})\.seal$")


def object_time(name: str, fallback: float | None = None) -> float | None:
    """Unix time of the hour an object was created, from its name; `fallback` when the name has none."""
    m = _HOUR.search(name)
    if m:
        try:
            return dt.datetime.strptime(m.group(1), "%Y%m%d%H").replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            pass
    return fallback


def local_deletions(entries: Iterable[SpoolEntry], now: float, days: int | None, max_bytes: int | None,
                    uploaded: Collection[str] | None = None) -> list[str]:
    """Spool objects to delete: complete ones older than `days`; then, while the spool exceeds `max_bytes`,
    the oldest complete objects that are in `uploaded` (None: treat all complete objects as uploaded)."""
    entries = list(entries)
    total = sum(e.size for e in entries)
    doomed: list[str] = []
    aged = sorted((e for e in entries if e.complete), key=lambda e: (object_time(e.name, e.mtime), e.name))
    if days is not None:
        cutoff = now - days * 86400
        for e in aged:
            if object_time(e.name, e.mtime) < cutoff:  # type: ignore[operator]
                doomed.append(e.name)
                total -= e.size
    if max_bytes is not None and total > max_bytes:
        for e in aged:
            if total <= max_bytes:
                break
            if e.name in doomed or (uploaded is not None and e.name not in uploaded):
                continue
            doomed.append(e.name)
            total -= e.size
    return doomed


def remote_deletions(listing: Mapping[str, int], now: float, days: int | None,
                     can_delete: bool) -> tuple[list[str], str | None]:
    """Remote objects older than `days`, or ([], reason) when this backend must not delete."""
    if days is None:
        return [], None
    if not can_delete:
        return [], "backend cannot delete (WORM or write-only credentials): retention is left to its lifecycle"
    cutoff = now - days * 86400
    return sorted(n for n in listing if (t := object_time(n)) is not None and t < cutoff), None

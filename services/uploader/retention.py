"""Retention decisions (pure): what to delete locally by age and size quota, and remotely by age.

Ages come from the object name's coarse hour (`.../<seq>-YYYYMMDDHH.seal`, see sealcam.bus.names.object_name),
else the spool file's mtime. Locally only complete objects are ever deleted; the size quota removes the oldest
complete objects that every backend already holds. Remotely, a backend that cannot delete (WORM, write-only
credentials) is skipped: its bucket's lifecycle owns retention.

Retention classes: crypto names a segment's class in its SealedRecords (`retention=event` for segments that
hold an event in recording modes events/both); the spool keeps the names of event objects (`Spool.event_objects`)
and they age by `event_days` instead of `days`. The caller resolves the config (`retention.event_days`, else
`retention.days`) before calling.
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


def days_for(name: str, days: int | None, event_days: int | None, events: Collection[str]) -> int | None:
    """How many days an object is kept: `event_days` for an event object, else `days` (None: forever)."""
    return event_days if name in events else days


def local_deletions(entries: Iterable[SpoolEntry], now: float, days: int | None, max_bytes: int | None,
                    uploaded: Collection[str] | None = None, *, event_days: int | None = None,
                    events: Collection[str] = ()) -> list[str]:
    """Spool objects to delete: complete ones older than their class's days (`days`, or `event_days` for names
    in `events`); then, while the spool exceeds `max_bytes`, the oldest complete objects that are in `uploaded`
    (None: treat all complete objects as uploaded)."""
    entries = list(entries)
    total = sum(e.size for e in entries)
    doomed: list[str] = []
    aged = sorted((e for e in entries if e.complete), key=lambda e: (object_time(e.name, e.mtime), e.name))
    for e in aged:
        d = days_for(e.name, days, event_days, events)
        if d is not None and object_time(e.name, e.mtime) < now - d * 86400:  # type: ignore[operator]
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
                     can_delete: bool, *, event_days: int | None = None,
                     events: Collection[str] = ()) -> tuple[list[str], str | None]:
    """Remote objects older than their class's days, or ([], reason) when this backend must not delete."""
    if days is None and (not events or event_days is None):
        return [], None
    if not can_delete:
        return [], "backend cannot delete (WORM or write-only credentials): retention is left to its lifecycle"
    doomed = []
    for n in listing:
        d = days_for(n, days, event_days, events)
        if d is not None and (t := object_time(n)) is not None and t < now - d * 86400:
            doomed.append(n)
    return sorted(doomed), None


def stale_class_marks(events: Iterable[str], spooled: Collection[str], now: float,
                      event_days: int | None) -> list[str]:
    """Event-class marks that can go: the object left the spool and is past `event_days` (so remote retention,
    which runs first, has deleted it where it could). Kept forever when event objects are kept forever."""
    if event_days is None:
        return []
    cutoff = now - event_days * 86400
    return sorted(n for n in events if n not in spooled and (t := object_time(n)) is not None and t < cutoff)

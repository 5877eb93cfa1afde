"""What a backend lacks, from the spool's sizes and the backend's listing (pure), and carrying it out (thin I/O).

Used at start and after any backend error: the live path of a backend falls back to reconcile until one
succeeds. Objects are compared by name and size; since every object only ever grows by appends at its end,
"remote has R bytes, spool has S > R" means exactly the range [R, S) is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .backends.base import Backend
from .spool import CHUNK, Spool, SpoolEntry


@dataclass(frozen=True)
class Action:
    kind: Literal["append", "complete", "conflict"]
    obj: str
    start: int = 0
    end: int = 0  # append: bytes [start, end) of the spool file; complete: the object's size


def plan(spool: Mapping[str, SpoolEntry], whole: Mapping[str, int], partial: Mapping[str, int],
         append_supported: bool) -> list[Action]:
    """Actions that make the backend hold what the spool holds. `whole`: the backend's listing of (whole)
    objects; `partial`: bytes held of unfinished objects (append-less backends). Objects only on the remote
    (e.g. removed from the spool by retention) are left alone."""
    out: list[Action] = []
    for name in sorted(spool):
        e = spool[name]
        if append_supported:
            have = whole.get(name, 0)
            if have > e.size:
                out.append(Action("conflict", name, e.size, have))
            elif have < e.size:
                out.append(Action("append", name, have, e.size))
            continue
        if name in whole:
            if whole[name] != e.size and e.complete:
                out.append(Action("conflict", name, e.size, whole[name]))
            continue
        if e.complete:
            out.append(Action("complete", name, 0, e.size))
            continue
        have = partial.get(name, 0)
        if have < e.size:
            out.append(Action("append", name, have, e.size))
    return out


def execute(backend: Backend, spool: Spool, actions: list[Action]) -> tuple[int, list[Action]]:
    """Carry out `actions`; returns (bytes sent, conflicts). A backend error propagates (the caller retries)."""
    sent = 0
    conflicts = []
    for a in actions:
        if a.kind == "conflict":
            conflicts.append(a)
        elif a.kind == "append":
            pos = a.start
            while pos < a.end:
                data = spool.read(a.obj, pos, min(CHUNK, a.end - pos))
                if not data:
                    break
                backend.append(a.obj, pos, data)
                pos += len(data)
                sent += len(data)
        elif a.kind == "complete":
            backend.complete(a.obj, spool.path(a.obj), a.end)
            sent += a.end
    return sent, conflicts


def reconcile(backend: Backend, spool: Spool) -> tuple[dict[str, SpoolEntry], int, list[Action]]:
    """List, plan and send. Returns (the spool snapshot now on the backend, bytes sent, conflicts)."""
    snapshot = spool.entries()
    whole = backend.list()
    partial = {} if backend.append_supported else backend.list_partial()
    sent, conflicts = execute(backend, spool, plan(snapshot, whole, partial, backend.append_supported))
    return snapshot, sent, conflicts

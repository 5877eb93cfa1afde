"""What a camera's timeline shows, from verification results and decrypted events. Pure: no I/O, no clock.

- spans: recorded footage (runs of chunk times with no step longer than `max_step_us`), `ok` false where the
  segment failed verification;
- gaps: honest gaps, declared in signed GAP records (reason, detail, lost segments);
- suspicious: what no signature explains: missing sequence numbers, failed verification, broken chains;
- events: detection events (start..end, label, score) with the thumbnail that belongs to each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..format import problems as P

DEFAULT_STEP_US = 1_000_000
MAX_STEP_US = 5_000_000


@dataclass(slots=True)
class SegInfo:
    name: str
    seq: int
    times: list[int]  # capture times of its chunks, in order
    problems: list[str] = field(default_factory=list)  # kinds of the problems named on this segment
    open: bool = False  # newest segment, still being written


@dataclass(slots=True)
class GapInfo:
    from_us: int
    until_us: int
    reason: str
    detail: str = ""
    lost_first_seq: int = 0
    lost_count: int = 0


def typical_step(times: list[int]) -> int:
    steps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    return steps[len(steps) // 2] if steps else DEFAULT_STEP_US


def spans(segs: list[SegInfo], max_step_us: int = MAX_STEP_US) -> list[dict]:
    """Recorded spans: chunks closer than max_step_us join; a segment's verdict colours its chunks."""
    out: list[dict] = []
    for s in sorted(segs, key=lambda s: s.seq):
        if not s.times:
            continue
        step = min(typical_step(s.times), max_step_us)
        ok = not s.problems
        for t in s.times:
            last = out[-1] if out else None
            if last is not None and last["ok"] == ok and t - last["until"] <= max_step_us and t >= last["from"]:
                last["until"] = max(last["until"], t + step)
            else:
                out.append({"from": t, "until": t + step, "ok": ok})
    return out


def suspicious(segs: list[SegInfo], problems: list[P.Problem]) -> list[dict]:
    """Time ranges of what no signature explains, each with its kinds and messages."""
    by_name = {s.name: s for s in segs}
    ordered = sorted(segs, key=lambda s: s.seq)
    out: dict[tuple[int, int], dict] = {}
    for p in problems:
        s = by_name.get(p.file or "")
        if s is None:
            continue
        if p.kind == P.MISSING_SEGMENT:
            prev = next((x for x in reversed(ordered) if x.seq < s.seq and x.times), None)
            a = prev.times[-1] if prev else (s.times[0] if s.times else 0)
            b = s.times[0] if s.times else a
        elif s.times:
            a, b = s.times[0], s.times[-1] + typical_step(s.times)
        else:
            continue
        item = out.setdefault((a, b), {"from": a, "until": max(b, a), "kinds": [], "messages": [], "seq": s.seq})
        if p.kind not in item["kinds"]:
            item["kinds"].append(p.kind)
        item["messages"].append(f"{p.kind}: {p.message}")
    return sorted(out.values(), key=lambda x: x["from"])


def gaps(items: list[GapInfo]) -> list[dict]:
    return [{"from": g.from_us, "until": max(g.until_us, g.from_us), "reason": g.reason, "detail": g.detail,
             "lost": [g.lost_first_seq, g.lost_first_seq + g.lost_count - 1] if g.lost_count else None}
            for g in sorted(items, key=lambda g: g.from_us)]


def _int(v: object, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def events(records: list[dict], thumbs: list[dict]) -> list[dict]:
    """One entry per event id (start/update/end merged; the best label and score win); records without an
    id are events of their own. Each gets the thumbnail with its id, else the nearest one inside it."""
    merged: dict[str, dict] = {}
    for n, r in enumerate(sorted(records, key=lambda r: _int(r.get("_time")))):
        t = _int(r.get("at_us"), _int(r.get("_time")))
        eid = r.get("event_id") if isinstance(r.get("event_id"), str) else f"_{n}"
        e = merged.setdefault(eid, {"id": eid, "from": _int(r.get("start_us"), t), "until": t,
                                    "label": "event", "kind": "event", "score": 0, "thumb": None})
        e["from"] = min(e["from"], _int(r.get("start_us"), t) or t)
        e["until"] = max(e["until"], _int(r.get("end_us"), t), t)
        if isinstance(r.get("kind"), str):
            e["kind"] = r["kind"][:32]
        score = _int(r.get("score"), -1)
        if isinstance(r.get("label"), str) and score >= e["score"]:
            e["label"], e["score"] = r["label"][:64], max(score, 0)
        elif isinstance(r.get("label"), str) and e["label"] == "event":
            e["label"] = r["label"][:64]
        if isinstance(r.get("state"), str):  # a feed event: lost/back
            e["label"] = f"feed {r['state'][:16]}"
    out = sorted(merged.values(), key=lambda e: e["from"])
    for th in thumbs:
        target = merged.get(th.get("event_id")) if isinstance(th.get("event_id"), str) else None
        if target is None:
            t = th["time"]
            inside = [e for e in out if e["from"] - 2_000_000 <= t <= e["until"] + 2_000_000]
            target = min(inside, key=lambda e: abs(e["from"] - t), default=None)
        if target is not None and target["thumb"] is None:
            target["thumb"] = {"seq": th["seq"], "index": th["index"]}
    return out


def clip(items: list[dict], a: int, b: int) -> list[dict]:
    """Items overlapping [a, b)."""
    return [x for x in items if x["until"] >= a and x["from"] < b]

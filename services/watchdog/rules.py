"""The watchdog's rules: pure functions of what was observed and an injected clock; no I/O here.

`evaluate()` turns an `Observations` snapshot into the set of conditions that are bad right now, each with a
human-readable reason. `AlertBook` keeps one small state machine per condition key and says when to notify:

    ok --bad--> pending --bad for fire_after_s--> firing --good--> recovering --good for hold_down_s--> ok
                   \\--good--> ok                    |  ^              |
                                                     |  \\----bad-------/   (no notification: no flapping)
                                                     \\-- bad, renotify_s since the last notice --> renotify

Times are seconds (floats) on one clock: the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

GB = 1_000_000_000


@dataclass(frozen=True)
class Thresholds:
    """When a condition is bad. Defaults suit one hub with ~1 s fragments."""

    fragment_seconds: float = 1.0  # the recording cadence (config recording.fragment_seconds)
    stall_factor: float = 2.0  # sealed output stalls after stall_factor x fragment_seconds + stall_grace_s
    stall_grace_s: float = 10.0
    startup_grace_s: float = 60.0  # how long after start a camera may have produced nothing yet
    health_timeout_s: float = 30.0  # a reporter that sent health once and then nothing for this long is silent
    upload_lag_max_s: float = 30.0  # uploader's lag_ms above this
    upload_backlog_max: int = 120  # sealed records not yet acknowledged by the uploader (all handles)
    spool_max_bytes: int = 20 * GB  # uploader counter spool_bytes above this
    disk_min_free_bytes: int = 2 * GB  # config alerts.disk_min_free_gb
    tamper_hold_s: float = 60.0  # a tamper event (e.g. a moved camera, over in a moment) stays bad this long

    @property
    def stall_after_s(self) -> float:
        return self.stall_factor * self.fragment_seconds + self.stall_grace_s


@dataclass(frozen=True)
class Timing:
    """How the state machines notify."""

    fire_after_s: float = 0.0  # a condition must stay bad this long before it fires
    hold_down_s: float = 30.0  # ... and good this long before it resolves (no flapping)
    renotify_s: float = 3600.0  # re-send a firing alert this often


@dataclass(frozen=True)
class HealthSeen:
    """The latest Health from one (service, camera) reporter, as received."""

    service: str
    camera: str | None
    at: float  # the report's own time (at_us, in seconds)
    received: float  # when the watchdog read it (its clock)
    lag_ms: int = 0
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Observations:
    now: float
    started: float  # when the watchdog started watching
    camera_ids: tuple[str, ...] = ()
    bus_ok: bool = True
    bus_error: str = ""
    sealed_last: dict[str, float] = field(default_factory=dict)  # handle -> time of its newest sealed record
    upload_backlog: int | None = None  # entries the uploader group has not acknowledged (undelivered + pending)
    health: tuple[HealthSeen, ...] = ()
    disk_free_bytes: int | None = None
    disk_path: str = ""
    tamper_last: dict[tuple[str, str], float] = field(default_factory=dict)  # (camera, label) -> last new event


@dataclass(frozen=True)
class Bad:
    key: str  # stable condition key, e.g. "stall:<handle>", "disk"
    reason: str
    severity: str = "high"  # "high" | "urgent"


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


#: What crypto's per-camera health says about tampering (counters tamper_<label>, tamper_<label>_active).
TAMPER_TEXT = {"covered": "lens covered", "blinded": "camera blinded (glare or a bright light)",
               "moved": "camera moved (its view changed)"}


class TamperLog:
    """When each (camera, tamper label) last had a new tamper event, from crypto's counters. Pure: it only
    compares counters between reports. The first report of a camera is a baseline (old events do not alert
    again after a watchdog restart); a counter that goes down (crypto restarted) is a new baseline."""

    def __init__(self) -> None:
        self._count: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], float] = {}

    def observe(self, health: tuple[HealthSeen, ...] | list[HealthSeen], now: float) -> dict[tuple[str, str], float]:
        for h in health:
            if h.service != "crypto" or h.camera is None:
                continue
            for label in TAMPER_TEXT:
                n = h.counters.get(f"tamper_{label}")
                if n is None:
                    continue
                key = (h.camera, label)
                before = self._count.get(key)
                if before is not None and n > before:
                    self.last[key] = now
                self._count[key] = n
        return dict(self.last)


def _camera_rules(obs: Observations, t: Thresholds, add) -> set[str]:  # noqa: ANN001 - add(key, reason, sev)
    """Feed loss, tamper, and events-mode idleness, from crypto's per-camera health. Returns the cameras that are
    idle on purpose (events mode between events, so their sealed output is allowed to stop)."""
    idle: set[str] = set()
    for h in obs.health:
        if h.service != "crypto" or h.camera is None or obs.now - h.received > t.health_timeout_s:
            continue
        cam = h.camera
        if h.counters.get("feed_lost") == 1:
            add(f"feed:{cam}", f"camera {cam}: feed lost (the recorder cannot get video from it)", "urgent")
        for label, text in TAMPER_TEXT.items():
            recent = obs.tamper_last.get((cam, label))
            if h.counters.get(f"tamper_{label}_active") == 1 or (
                    recent is not None and obs.now - recent < t.tamper_hold_s):
                add(f"tamper:{cam}:{label}", f"camera {cam}: {text}", "urgent")
        if h.counters.get("recording") == 0:
            idle.add(cam)
            if h.lag_ms > t.stall_after_s * 1000:
                add(f"idle-stall:{cam}", f"camera {cam} (recording mode events, between events): no video "
                    f"reached the sealing service for {_fmt_s(h.lag_ms / 1000)} (limit {_fmt_s(t.stall_after_s)})",
                    "urgent")
    return idle


def evaluate(obs: Observations, t: Thresholds) -> dict[str, Bad]:
    """Every condition that is bad in `obs`; a key absent from the result is good."""
    bad: dict[str, Bad] = {}

    def add(key: str, reason: str, severity: str = "high") -> None:
        bad[key] = Bad(key, reason, severity)

    if not obs.bus_ok:
        add("bus", f"sealed bus unreachable: {obs.bus_error or 'no answer'}", "urgent")
        # Nothing else can be judged without the bus; disk still can.
    else:
        idle = _camera_rules(obs, t, add)
        limit = t.stall_after_s
        stalled = [(h, obs.now - last) for h, last in sorted(obs.sealed_last.items()) if obs.now - last > limit]
        # Handles are opaque here: cameras idle in events mode explain as many stalled handles as there are of
        # them (their own liveness is judged by crypto's lag instead, above).
        if len(stalled) > len(idle):
            for handle, age in stalled:
                add(f"stall:{handle}", f"sealed output of camera handle {handle[:12]}... stalled: last record "
                    f"{_fmt_s(age)} ago (limit {_fmt_s(limit)})"
                    + (f"; {len(idle)} camera(s) idle in events mode" if idle else ""), "urgent")
        running = obs.now - obs.started
        if running > t.startup_grace_s and len(obs.sealed_last) + len(idle) < len(obs.camera_ids):
            add("cameras-missing", f"{len(obs.camera_ids) - len(obs.sealed_last)} of {len(obs.camera_ids)} "
                f"camera(s) have produced no sealed output in {_fmt_s(running)}", "urgent")
        if obs.upload_backlog is not None and obs.upload_backlog > t.upload_backlog_max:
            add("upload-backlog", f"{obs.upload_backlog} sealed records not yet acknowledged by the uploader "
                f"(limit {t.upload_backlog_max})")
        for h in obs.health:
            who = h.service + (f" (camera {h.camera})" if h.camera else "")
            silent = obs.now - h.received
            if silent > t.health_timeout_s:
                add(f"silent:{h.service}:{h.camera or '-'}", f"no health from {who} for {_fmt_s(silent)} "
                    f"(limit {_fmt_s(t.health_timeout_s)})")
                continue  # its figures are stale; don't judge them
            if h.service == "uploader":
                if h.lag_ms > t.upload_lag_max_s * 1000:
                    add(f"upload-lag:{h.camera or '-'}", f"upload lag {_fmt_s(h.lag_ms / 1000)} "
                        f"(limit {_fmt_s(t.upload_lag_max_s)})")
                spool = h.counters.get("spool_bytes")
                if spool is not None and spool > t.spool_max_bytes:
                    add("spool", f"upload spool holds {spool / GB:.2f} GB (limit {t.spool_max_bytes / GB:.2f} GB)")
    if obs.disk_free_bytes is not None and obs.disk_free_bytes < t.disk_min_free_bytes:
        add("disk", f"disk low: {obs.disk_free_bytes / GB:.2f} GB free on {obs.disk_path or 'data_dir'} "
            f"(minimum {t.disk_min_free_bytes / GB:.2f} GB)", "urgent")
    return bad


class State(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"


@dataclass(frozen=True)
class Event:
    """A notification to send: kind is "firing", "renotify" or "resolved"."""

    kind: str
    key: str
    reason: str
    severity: str
    at: float
    since: float  # when the condition went bad (firing/renotify) or when it fired (resolved)


@dataclass
class _Cond:
    state: State = State.OK
    since: float = 0.0  # entered the current state
    bad_since: float = 0.0
    fired_at: float = 0.0
    notified_at: float = 0.0
    reason: str = ""
    severity: str = "high"


class AlertBook:
    """One state machine per condition key. `step()` takes the bad set at `now` and returns what to send."""

    def __init__(self, timing: Timing | None = None) -> None:
        self.timing = timing or Timing()
        self._conds: dict[str, _Cond] = {}

    def step(self, bad: dict[str, Bad], now: float) -> list[Event]:
        tm = self.timing
        events: list[Event] = []
        for key in sorted(set(bad) | set(self._conds)):
            c = self._conds.setdefault(key, _Cond(since=now))
            b = bad.get(key)
            if b is not None:
                c.reason, c.severity = b.reason, b.severity
            if c.state is State.OK:
                if b is not None:
                    c.state, c.since, c.bad_since = State.PENDING, now, now
            if c.state is State.PENDING:
                if b is None:
                    c.state, c.since = State.OK, now
                elif now - c.bad_since >= tm.fire_after_s:
                    c.state, c.since, c.fired_at, c.notified_at = State.FIRING, now, now, now
                    events.append(Event("firing", key, c.reason, c.severity, now, c.bad_since))
            elif c.state is State.FIRING:
                if b is None:
                    c.state, c.since = State.RECOVERING, now
                    if tm.hold_down_s <= 0:
                        c.state = State.OK
                        events.append(Event("resolved", key, c.reason, c.severity, now, c.fired_at))
                elif now - c.notified_at >= tm.renotify_s:
                    c.notified_at = now
                    events.append(Event("renotify", key, c.reason, c.severity, now, c.bad_since))
            elif c.state is State.RECOVERING:
                if b is not None:
                    c.state, c.since = State.FIRING, now  # flapped back: still the same alert, no new notice
                elif now - c.since >= tm.hold_down_s:
                    c.state, c.since = State.OK, now
                    events.append(Event("resolved", key, c.reason, c.severity, now, c.fired_at))
            if c.state is State.OK and b is None:
                del self._conds[key]  # forget conditions that are fine (e.g. handles that went away)
        return events

    def state(self, key: str) -> State:
        c = self._conds.get(key)
        return c.state if c else State.OK

    def active(self) -> dict[str, tuple[State, str]]:
        """Conditions not OK: key -> (state, reason)."""
        return {k: (c.state, c.reason) for k, c in sorted(self._conds.items()) if c.state is not State.OK}

    def unhealthy(self) -> dict[str, str]:
        """Conditions firing or recovering (for /healthz): key -> reason."""
        return {k: c.reason for k, c in sorted(self._conds.items()) if c.state in (State.FIRING, State.RECOVERING)}

    def all_ok(self) -> bool:
        """Nothing bad at all, not even pending: the only time the uptime monitor is pinged."""
        return not self._conds

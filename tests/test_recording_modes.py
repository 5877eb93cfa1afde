"""Recording modes and retention classes: the pure decisions (no servers), and the uploader's spool marks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sealcam.bus.contract import ContractError, SealedRecord
from sealcam.config.models import Config
from services.crypto.modes import DETECTION_SLACK_US, Keeper, ModeSettings, PreRoll
from services.uploader.retention import local_deletions, remote_deletions, stale_class_marks
from services.uploader.spool import Spool, SpoolEntry
from services.watchdog.rules import HealthSeen, Observations, TamperLog, Thresholds, evaluate

S = 1_000_000
EV = "ab" * 16
EV2 = "cd" * 16


@dataclass
class F:
    capture_us: int
    keyframe: bool


def events_keeper(pre: int = 3, post: int = 2, max_s: int = 20) -> Keeper:
    return Keeper(ModeSettings("events", pre * S, post * S, max_s * S))


# -- the pre-roll ring ------------------------------------------------------------------------------------

def test_preroll_starts_on_a_keyframe_and_reaches_back_far_enough() -> None:
    ring: PreRoll[F] = PreRoll(3 * S)
    ring.push(F(0, False))  # nothing decodable before the first key frame
    assert len(ring) == 0
    for t in range(0, 20):
        ring.push(F(t * S, t % 2 == 0))  # a key frame every 2 s
    items = list(ring)
    assert items[0].keyframe
    assert items[0].capture_us <= 19 * S - 3 * S < items[2].capture_us  # reaches 3 s back, not a group more
    got = ring.take_from(17 * S)
    assert [f.capture_us for f in got] == [16 * S, 17 * S, 18 * S, 19 * S]  # from the key frame at or before 17 s
    assert len(ring) == 0
    ring.push(F(30 * S, True))
    assert [f.capture_us for f in ring.take_from(0)] == [30 * S]  # nothing that old: from the first key frame


# -- the modes --------------------------------------------------------------------------------------------

def test_continuous_keeps_everything_and_marks_nothing() -> None:
    k = Keeper(ModeSettings("continuous"))
    assert not k.event(EV, "start", 5 * S, 5 * S)
    assert all(k.fragment(t * S) == k.fragment(t * S) and k.fragment(t * S).keep for t in range(10))
    assert not any(k.fragment(t * S).in_event for t in range(10))


def test_events_mode_window_pre_and_post_roll() -> None:
    k = events_keeper(pre=3, post=2)
    assert not k.recording
    assert [k.fragment(t * S).keep for t in range(10)] == [False] * 10  # idle: all held in RAM
    assert k.event(EV, "start", 8 * S, 9 * S)  # opens the window: the sealer flushes the ring from...
    assert k.ring_from_us == 5 * S  # ...start - pre_roll
    assert k.recording
    assert k.fragment(10 * S).keep
    assert not k.event(EV, "update", 8 * S, 11 * S)
    assert not k.event(EV, "end", 8 * S, 12 * S, end_us=12 * S)
    assert k.fragment(13 * S).keep and k.fragment(14 * S).keep  # post-roll: until end + 2 s
    d = k.fragment(15 * S)
    assert d.stop and not d.keep  # window over: close the segment, hold again
    assert not k.recording and not k.fragment(16 * S).keep
    assert k.event(EV2, "start", 20 * S, 20 * S)  # a new event opens a new window


def test_events_mode_overlapping_events_and_the_cap() -> None:
    k = events_keeper(pre=1, post=1, max_s=10)
    k.fragment(0)
    assert k.event(EV, "start", 1 * S, 1 * S)
    assert not k.event(EV2, "start", 3 * S, 3 * S)  # joins the open window
    k.event(EV, "end", 1 * S, 4 * S, end_us=4 * S)
    assert k.fragment(6 * S).keep  # EV2 still active
    # EV2's cap: 3 - 1 + 10 = 12 s
    assert k.fragment(12 * S).keep
    d = k.fragment(13 * S)
    assert d.stop and not d.keep
    assert not k.event(EV2, "update", 3 * S, 14 * S)  # capped: ignored until it ends
    assert not k.fragment(15 * S).keep
    assert not k.event(EV2, "end", 3 * S, 16 * S, end_us=16 * S)
    assert k.event(EV2, "start", 20 * S, 20 * S)  # after its end, the same id may start again


def test_events_mode_unknown_event_after_a_restart() -> None:
    k = events_keeper(pre=2, post=5, max_s=60)
    k.fragment(100 * S)
    assert k.event(EV, "update", 95 * S, 100 * S)  # crypto restarted mid-event: counts as a start
    k2 = events_keeper(pre=2, post=5, max_s=10)
    k2.fragment(100 * S)
    assert not k2.event(EV, "update", 50 * S, 100 * S)  # already past its cap: not recorded
    assert not k2.recording


def test_both_mode_keeps_everything_and_marks_event_windows() -> None:
    k = Keeper(ModeSettings("both", 2 * S, 1 * S, 60 * S))
    assert not k.fragment(0).in_event
    assert not k.event(EV, "start", 5 * S, 5 * S)  # both: no ring flush needed
    assert k.fragment(4 * S).in_event  # inside start - pre_roll
    k.event(EV, "end", 5 * S, 6 * S, end_us=6 * S)
    assert k.fragment(7 * S).in_event
    d = k.fragment(8 * S)
    assert d.keep and not d.stop and not d.in_event


def test_mode_settings_from_config_per_camera(tmp_path: Path) -> None:
    cfg = Config.model_validate({
        "data_dir": str(tmp_path), "recipients": ["./r.pub"], "hub": {"signing_key_file": "./hub.key"},
        "storage": [{"type": "local", "path": "remote"}],
        "recording": {"mode": "events", "pre_roll_seconds": 4},
        "cameras": [{"id": "a", "inputs": [{"url": "synthetic://a", "roles": ["record"]}]},
                    {"id": "b", "inputs": [{"url": "synthetic://b", "roles": ["record"]}],
                     "recording": {"mode": "continuous", "max_event_seconds": 60}}],
    }, context={"base_dir": tmp_path})
    rec = cfg.section_for("crypto")["camera_recording"]
    a, b = ModeSettings.from_recording(rec["a"]), ModeSettings.from_recording(rec["b"])
    assert (a.mode, a.pre_roll_us, a.max_event_us) == ("events", 4 * S, 300 * S)
    assert (b.mode, b.max_event_us) == ("continuous", 60 * S)
    assert Keeper(a).ring_keep_us == 4 * S + DETECTION_SLACK_US
    with pytest.raises(ValueError, match="recording mode"):
        ModeSettings("sometimes")


# -- retention classes --------------------------------------------------------------------------------------

HOUR_0 = 1_790_000_000  # a Unix time; object names carry its hour


def name(seq: int, days_ago: float, now: float = HOUR_0) -> str:
    import datetime as dt

    hour = dt.datetime.fromtimestamp(now - days_ago * 86400, dt.UTC).strftime("%Y%m%d%H")
    return f"{'ab' * 8}/{seq:012d}-{hour}.seal"


def test_retention_by_class_local_and_remote() -> None:
    old_cont, old_event, new_event = name(1, 10), name(2, 10), name(3, 2)
    entries = [SpoolEntry(n, 100, True, 0.0) for n in (old_cont, old_event, new_event)]
    events = {old_event, new_event}
    # continuous kept 7 days, events 30: only the old continuous one goes
    assert local_deletions(entries, HOUR_0, 7, None, event_days=30, events=events) == [old_cont]
    listing = {n: 100 for n in (old_cont, old_event, new_event)}
    assert remote_deletions(listing, HOUR_0, 7, True, event_days=30, events=events) == ([old_cont], None)
    # events kept 1 day only, continuous forever
    assert local_deletions(entries, HOUR_0, None, None, event_days=1, events=events) == [old_event, new_event]
    assert remote_deletions(listing, HOUR_0, None, True, event_days=1, events=events)[0] == [old_event, new_event]
    # no classes: as before
    assert local_deletions(entries, HOUR_0, 7, None) == [old_cont, old_event]
    assert remote_deletions(listing, HOUR_0, 7, False, event_days=1, events=events)[0] == []  # WORM
    assert stale_class_marks(events, {new_event}, HOUR_0, 5) == [old_event]
    assert stale_class_marks(events, set(), HOUR_0, None) == []


def test_spool_keeps_event_marks_past_the_object(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    n = name(7, 0)
    rec = SealedRecord("ab" * 8, 7, 0, b"x" * 10, True, n, "event")
    assert SealedRecord.from_fields(rec.to_fields()).retention == "event"
    assert b"retention" not in SealedRecord("ab" * 8, 7, 0, b"x", True, n).to_fields()  # optional: continuous
    with pytest.raises(ContractError, match="retention"):
        SealedRecord("ab" * 8, 7, 0, b"x", True, n, "forever")  # type: ignore[arg-type]
    assert spool.mark_event(n) and not spool.mark_event(n)
    spool.append(rec)
    assert spool.event_objects() == {n}
    spool.delete(n)  # local retention removes the object...
    assert spool.event_objects() == {n}  # ...the class stays for remote retention
    spool.forget_class(n)
    assert spool.event_objects() == set()


# -- watchdog: tamper, feed loss, events-mode idleness ------------------------------------------------------

def crypto_health(cam: str, now: float, lag_ms: int = 500, **counters: int) -> HealthSeen:
    return HealthSeen("crypto", cam, now, now, lag_ms, {"recording": 1, "feed_lost": 0} | counters)


def test_watchdog_tamper_feed_and_idle_cameras() -> None:
    t = Thresholds(tamper_hold_s=60)
    log = TamperLog()
    now = 1000.0
    h0 = (crypto_health("porch", now, tamper_moved=0),)
    assert log.observe(h0, now) == {}
    h1 = (crypto_health("porch", now + 5, tamper_moved=1, tamper_covered_active=1, tamper_covered=1),)
    last = log.observe(h1, now + 5)
    assert last == {("porch", "moved"): now + 5}  # covered: first seen at once as active, counted from here
    obs = Observations(now=now + 5, started=0, camera_ids=("porch",), sealed_last={"h1": now + 5},
                       health=h1, tamper_last=last)
    bad = evaluate(obs, t)
    assert bad["tamper:porch:moved"].reason == "camera porch: camera moved (its view changed)"
    assert bad["tamper:porch:covered"].reason == "camera porch: lens covered"
    obs = Observations(now=now + 70, started=0, camera_ids=("porch",), sealed_last={"h1": now + 70},
                       health=(crypto_health("porch", now + 70, tamper_moved=1),), tamper_last=last)
    assert not [k for k in evaluate(obs, t) if k.startswith("tamper")]  # held 60 s, then good again
    obs = Observations(now=now, started=0, camera_ids=("porch",), sealed_last={"h1": now},
                       health=(crypto_health("porch", now, feed_lost=1),))
    assert evaluate(obs, t)["feed:porch"].severity == "urgent"


def test_watchdog_idle_events_camera_is_not_a_stall() -> None:
    t = Thresholds()
    now = 5000.0
    idle = crypto_health("yard", now, recording=0)
    live = crypto_health("porch", now)
    obs = Observations(now=now, started=0, camera_ids=("yard", "porch"),
                       sealed_last={"h-yard": now - 600, "h-porch": now}, health=(idle, live))
    assert evaluate(obs, t) == {}  # the yard camera sits between events: its sealed stream may rest
    both_stalled = Observations(now=now, started=0, camera_ids=("yard", "porch"),
                                sealed_last={"h-yard": now - 600, "h-porch": now - 600}, health=(idle, live))
    bad = evaluate(both_stalled, t)
    assert {"stall:h-yard", "stall:h-porch"} <= set(bad)  # one idle camera cannot explain two stalls
    no_video = crypto_health("yard", now, lag_ms=120_000, recording=0)
    obs = Observations(now=now, started=0, camera_ids=("yard",), sealed_last={}, health=(no_video,))
    bad = evaluate(obs, t)
    assert "idle-stall:yard" in bad and "cameras-missing" not in bad

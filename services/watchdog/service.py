"""The watchdog loop: read health from the sealed bus only, judge it with `rules`, notify, serve /healthz.

What it reads (never the plain bus, never a record's content):
- `sealed:health` through consumer group `watchdog` (Health from crypto, forwarded plain-side reports, uploader);
- for each `sealed:rec:{handle}` stream: XINFO STREAM's last-generated-id (the time of the newest sealed record,
  from the entry id) and XINFO GROUPS for the `uploader` group's unacknowledged count. Nothing reads entries.
What it writes: XACK on its own group, and its heartbeat `hb:watchdog:{instance}` on the sealed bus.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from sealcam.bus import names
from sealcam.bus.client import BusAuth, connect
from sealcam.bus.contract import ContractError, Health

from .http import Metric, Snapshot, StatusServer
from .notify import Notifier
from .rules import AlertBook, Event, HealthSeen, Observations, State, TamperLog, Thresholds, Timing, evaluate

log = logging.getLogger("sealcam.watchdog")

_REC_PREFIX = names.sealed_rec("0" * 16)[:-16]  # "sealed:rec:"


def default_instance() -> str:
    return names.instance_name()


def sealed_bus_url(section: dict) -> str:
    """The configured sealed bus, else the embedded one `sealcam up` starts under data_dir/run."""
    return section.get("sealed_bus") or f"unix://{Path(section['data_dir']) / 'run' / 'sealed.sock'}"


def disk_free(path: Path) -> tuple[int | None, str]:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free, str(p)
    except OSError:
        return None, str(p)


@dataclass
class Settings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    timing: Timing = field(default_factory=Timing)
    interval_s: float = 1.0  # one evaluation per interval (health is read blocking up to this long)
    uptime_interval_s: float = 60.0
    http_host: str = "127.0.0.1"
    http_port: int | None = 9481  # None: no HTTP endpoint; 0: any free port


class Watchdog:
    def __init__(self, bus_url: str, camera_ids: tuple[str, ...], data_dir: Path, notifier: Notifier,
                 settings: Settings | None = None, instance: str | None = None,
                 clock: Callable[[], float] = time.time, bus_auth: BusAuth | None = None) -> None:
        self.settings = settings or Settings()
        self.bus_url = bus_url
        self.bus_auth = bus_auth  # its ACL user on the sealed bus (None: no ACLs)
        self.camera_ids = tuple(camera_ids)
        self.data_dir = Path(data_dir)
        self.notifier = notifier
        self.instance = instance or default_instance()
        self.clock = clock
        self.book = AlertBook(self.settings.timing)
        self.tamper = TamperLog()
        self.started = clock()
        self.health: dict[tuple[str, str | None], HealthSeen] = {}
        self.bad_entries = 0
        self.events: list[Event] = []  # every event produced (tests and metrics read it)
        self.last_obs: Observations | None = None
        self._r: redis.Redis | None = None
        self._group_ready = False
        self._last_hb = 0.0
        self._last_uptime = 0.0
        self.http: StatusServer | None = None
        self.stop_event = threading.Event()

    # -- bus -------------------------------------------------------------------------------------------------
    @property
    def r(self) -> redis.Redis:
        if self._r is None:
            self._r = connect(self.bus_url, name=f"watchdog-{self.instance}", socket_timeout=10.0, auth=self.bus_auth)
        return self._r

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.r.xgroup_create(names.SEALED_HEALTH, names.GROUP_WATCHDOG, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def read_health(self, block_s: float) -> int:
        """Read new Health entries (blocking up to block_s), remember the newest per reporter, XACK them."""
        self._ensure_group()
        try:
            resp = self.r.xreadgroup(names.GROUP_WATCHDOG, self.instance, {names.SEALED_HEALTH: ">"}, count=500,
                                     block=max(1, int(block_s * 1000)))
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the bus lost its data (restarted without persistence): recreate
                self._group_ready = False
            raise
        n = 0
        now = self.clock()
        for _stream, entries in resp or []:
            ids = []
            for entry_id, fields in entries:
                ids.append(entry_id)
                try:
                    h = Health.from_fields(fields)
                except ContractError as exc:
                    self.bad_entries += 1
                    log.warning("ignoring a malformed health entry %s: %s", entry_id, exc)
                    continue
                at = h.at_us / 1e6
                key = (h.service, h.camera)
                prev = self.health.get(key)
                if prev is not None and prev.at > at:
                    continue
                self.health[key] = HealthSeen(h.service, h.camera, at, min(now, at), h.lag_ms, dict(h.counters))
                n += 1
            if ids:
                self.r.xack(names.SEALED_HEALTH, names.GROUP_WATCHDOG, *ids)
        return n

    def sealed_streams(self) -> tuple[dict[str, float], int]:
        """handle -> newest record time (our clock), and the uploader's unacknowledged records over all handles."""
        r = self.r
        server_s, server_us = r.time()
        offset = self.clock() - (server_s + server_us / 1e6)  # server clock -> ours
        last: dict[str, float] = {}
        backlog = 0
        for key in r.scan_iter(match=_REC_PREFIX + "*", count=1000, _type="STREAM"):
            k = key.decode() if isinstance(key, bytes) else key
            handle = k[len(_REC_PREFIX):]
            try:
                names.sealed_rec(handle)
            except ValueError:
                continue
            try:
                info = r.xinfo_stream(k)
                groups = r.xinfo_groups(k)
            except redis.ResponseError:
                continue  # deleted between SCAN and XINFO
            lid = info.get("last-generated-id") or b"0-0"
            ms = int((lid.decode() if isinstance(lid, bytes) else str(lid)).split("-", 1)[0])
            if ms == 0:
                continue
            last[handle] = ms / 1000 + offset
            up = [g for g in groups if _s(g.get("name")) == names.GROUP_UPLOADER]
            if up:
                backlog += int(up[0].get("pending") or 0) + int(up[0].get("lag") or 0)
            else:
                backlog += int(info.get("length") or 0)
        return last, backlog

    def heartbeat(self, now: float) -> None:
        if now - self._last_hb >= names.HEARTBEAT_INTERVAL_S:
            self.r.set(names.heartbeat_key("watchdog", self.instance), str(int(now * 1e6)),
                       ex=names.HEARTBEAT_TTL_S)
            self._last_hb = now

    # -- one round -------------------------------------------------------------------------------------------
    def observe(self, block_s: float = 0.0) -> Observations:
        bus_ok, err = True, ""
        sealed: dict[str, float] = {}
        backlog: int | None = None
        try:
            self.read_health(block_s)
            sealed, backlog = self.sealed_streams()
            self.heartbeat(self.clock())
        except (redis.RedisError, OSError) as exc:
            bus_ok, err = False, type(exc).__name__
            log.warning("sealed bus: %s", exc)
            if block_s:
                self.stop_event.wait(min(block_s, 1.0))
        free, where = disk_free(self.data_dir)
        now = self.clock()
        health = tuple(self.health.values())
        return Observations(now=now, started=self.started, camera_ids=self.camera_ids, bus_ok=bus_ok,
                            bus_error=err, sealed_last=sealed, upload_backlog=backlog,
                            health=health, disk_free_bytes=free, disk_path=where,
                            tamper_last=self.tamper.observe(health, now))

    def tick(self, block_s: float = 0.0) -> list[Event]:
        obs = self.observe(block_s)
        self.last_obs = obs
        bad = evaluate(obs, self.settings.thresholds)
        events = self.book.step(bad, obs.now)
        for ev in events:
            (log.info if ev.kind == "resolved" else log.warning)("%s %s: %s", ev.kind, ev.key, ev.reason)
            self.notifier.send(ev)
        self.events += events
        if self.book.all_ok() and obs.now - self._last_uptime >= self.settings.uptime_interval_s:
            self._last_uptime = obs.now
            self.notifier.ping_uptime()
        if self.http:
            self.http.publish(self.snapshot(obs))
        return events

    def snapshot(self, obs: Observations) -> Snapshot:
        unhealthy = self.book.unhealthy()
        healthy = not unhealthy
        now = obs.now
        active = self.book.active()
        m = [
            Metric("sealcam_watchdog_healthy", "gauge", "1 when no alert is firing.", (({}, 1 if healthy else 0),)),
            Metric("sealcam_sealed_bus_up", "gauge", "1 when the sealed bus answered in the last round.",
                   (({}, 1 if obs.bus_ok else 0),)),
            Metric("sealcam_watchdog_condition", "gauge", "Conditions not OK, by state (pending/firing/recovering).",
                   tuple(({"condition": k, "state": str(s)}, 1) for k, (s, _) in active.items())),
            Metric("sealcam_cameras_configured", "gauge", "Cameras in the config.", (({}, len(obs.camera_ids)),)),
            Metric("sealcam_sealed_streams", "gauge", "Sealed record streams (camera handles) seen.",
                   (({}, len(obs.sealed_last)),)),
            Metric("sealcam_sealed_last_record_age_seconds", "gauge", "Seconds since the newest sealed record, "
                   "per camera handle.", tuple(({"handle": h}, round(now - t, 3))
                                               for h, t in sorted(obs.sealed_last.items()))),
            Metric("sealcam_health_age_seconds", "gauge", "Seconds since the last health report, per reporter.",
                   tuple(({"service": h.service, "camera": h.camera or ""}, round(now - h.received, 3))
                         for h in obs.health)),
            Metric("sealcam_health_lag_seconds", "gauge", "Reported lag behind input, per reporter.",
                   tuple(({"service": h.service, "camera": h.camera or ""}, h.lag_ms / 1000) for h in obs.health)),
            Metric("sealcam_upload_spool_bytes", "gauge", "Upload spool size reported by the uploader.",
                   tuple(({"camera": h.camera or ""}, h.counters["spool_bytes"]) for h in obs.health
                         if h.service == "uploader" and "spool_bytes" in h.counters)),
            Metric("sealcam_watchdog_notifications_total", "counter", "Alert deliveries, by channel and result.",
                   tuple(({"channel": c, "result": "ok"}, n) for c, n in sorted(self.notifier.sent.items()))
                   + tuple(({"channel": c, "result": "failed"}, n) for c, n in sorted(self.notifier.failed.items()))),
            Metric("sealcam_watchdog_bad_health_entries_total", "counter", "Malformed health entries ignored.",
                   (({}, self.bad_entries),)),
        ]
        if obs.upload_backlog is not None:
            m.append(Metric("sealcam_upload_backlog_records", "gauge", "Sealed records not yet acknowledged by the "
                            "uploader.", (({}, obs.upload_backlog),)))
        if obs.disk_free_bytes is not None:
            m.append(Metric("sealcam_disk_free_bytes", "gauge", "Free bytes on the data_dir file system.",
                            (({"path": obs.disk_path}, obs.disk_free_bytes),)))
        reasons = {k: r for k, r in unhealthy.items()}
        reasons.update({k: f"(pending) {r}" for k, (s, r) in active.items() if s is State.PENDING})
        return Snapshot(healthy=healthy, reasons=reasons if not healthy else {}, metrics=tuple(m))

    # -- running ---------------------------------------------------------------------------------------------
    def start_http(self) -> StatusServer | None:
        s = self.settings
        if s.http_port is None:
            return None
        self.http = StatusServer(s.http_host, s.http_port).start()
        log.info("serving /healthz and /metrics on http://%s:%d", self.http.host, self.http.port)
        return self.http

    def run(self) -> None:
        log.info("watchdog %s: sealed bus %s, %d camera(s), alerts: %s", self.instance,
                 self.bus_url.split("?", 1)[0], len(self.camera_ids), self.notifier.describe())
        if self.http is None:
            self.start_http()
        try:
            while not self.stop_event.is_set():
                try:
                    self.tick(block_s=self.settings.interval_s)
                except Exception:  # noqa: BLE001 - keep watching; a bug here must not silence the alerts
                    log.exception("watchdog round failed")
                    self.stop_event.wait(self.settings.interval_s)
        finally:
            if self.http:
                self.http.stop()
            if self._r is not None:
                self._r.close()
            log.info("watchdog stopped")

    def stop(self) -> None:
        self.stop_event.set()


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)

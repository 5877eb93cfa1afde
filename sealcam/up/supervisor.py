"""Start the buses and every service, keep them running, stop them in an order that loses nothing.

    buses (embedded unless configured) -> crypto -> uploader -> watchdog -> motion -> recorder

Each service is `python -m <module> --config <effective config>` in its own session (so a terminal's Ctrl-C
reaches only the supervisor, which then stops services in order), with stdout+stderr going to
`<data_dir>/logs/<service>.log` and echoed, prefixed, to the supervisor's log at INFO. An unexpected exit is
restarted with backoff (`restart.py`); a fatal one (exit code 2, or a crash loop) stops everything, exit 1.
On stop: SIGTERM, wait `grace_s`, then SIGKILL. The effective config (`<data_dir>/run/config.yml`) is the
user's config with the bus URLs filled in, so services need nothing else (no env vars).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..bus import acl, names
from ..bus.client import connect
from ..bus.embedded import EmbeddedBus
from ..config import Config
from .restart import RestartPolicy, RestartTracker

log = logging.getLogger("sealcam.up")

#: Start order. motion runs only when some camera has motion detection enabled (config `motion.enabled`).
SERVICE_ORDER = ("crypto", "uploader", "watchdog", "motion", "recorder")
#: Stop order: no new footage first; motion next (it ends its open events); then crypto closes its segments
#: (final records onto the sealed bus); then the uploader takes those in and ships them; the watchdog last. So
#: a clean stop leaves the remote complete.
STOP_ORDER = ("recorder", "motion", "crypto", "uploader", "watchdog")
CLEAN_EXIT = (0, -signal.SIGTERM, -signal.SIGINT)


class UpError(RuntimeError):
    """`sealcam up` cannot start (missing service module, bus failure, ...)."""


@dataclass
class ServiceSpec:
    name: str
    module: str  # run as `python -m module --config FILE`
    extra_args: tuple[str, ...] = ()
    stop_rank: int | None = None  # lower stops first; None: after the ranked ones, in reverse start order

    def argv(self, config_path: Path) -> list[str]:
        return [sys.executable, "-m", self.module, "--config", str(config_path), *self.extra_args]


def default_services() -> list[ServiceSpec]:
    return [ServiceSpec(n, f"services.{n}", stop_rank=STOP_ORDER.index(n)) for n in SERVICE_ORDER]


def motion_wanted(config: Config) -> bool:
    """True when some camera has motion detection enabled (its effective `motion.enabled`)."""
    from ..config.motion import effective_motion

    return any(effective_motion(config, cam).enabled for cam in config.cameras)


@dataclass
class _Proc:
    spec: ServiceSpec
    tracker: RestartTracker
    log_path: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    pump: threading.Thread | None = None
    killed: bool = False
    signal_pid: int | None = None  # where SIGTERM goes when not proc.pid (sandboxed: the service, pid 1 inside)


@dataclass
class Supervisor:
    config: Config
    data_dir: Path
    services: list[ServiceSpec] = field(default_factory=lambda: default_services())
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    grace_s: float = 10.0
    env: dict[str, str] | None = None  # environment of the services (default: ours)
    echo: Callable[[str, str], None] | None = None  # (service, line) -> None; default: log at INFO
    buses: list[EmbeddedBus] = field(default_factory=list)
    procs: list[_Proc] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None
    effective_config: Path | None = None
    sandbox: Any = None  # a sealcam.up.sandbox.Sandbox: each service runs inside bubblewrap (`up --sandbox`)

    # -- setup -----------------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def check_modules(self) -> None:
        """Fail clearly, before starting anything, when a service's module is missing (not built yet)."""
        mods = [s.module for s in self.services]
        code = ("import importlib.util, sys\n"
                "missing = []\n"
                "for m in sys.argv[1:]:\n"
                "    try:\n"
                "        ok = importlib.util.find_spec(m + '.__main__') is not None\n"
                "    except ImportError:\n"
                "        ok = False\n"
                "    if not ok:\n"
                "        missing.append(m)\n"
                "print(' '.join(missing))\n")
        res = subprocess.run([sys.executable, "-c", code, *mods], env=self._env(), capture_output=True, text=True,
                             timeout=60)
        if res.returncode != 0:
            raise UpError(f"cannot check service modules: {res.stderr.strip()[-500:]}")
        missing = res.stdout.split()
        if missing:
            raise UpError("service module(s) not found: " + ", ".join(f"{m} (python -m {m})" for m in missing)
                          + "; this build does not have every service yet")

    def _env(self) -> dict[str, str]:
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    @property
    def bus_acl_dir(self) -> Path:
        """Where `sealcam up` keeps the generated bus passwords when the config names no buses.acl_dir."""
        return self.data_dir / "keys" / "bus"

    def start_buses(self) -> Config:
        """Start embedded buses for the URLs the config leaves empty; returns the config with both URLs set.

        ACL users (sealcam.bus.acl) on the embedded buses: with buses.acl_dir, from its password files (missing
        ones are generated); without it and with both buses embedded, from passwords generated once under
        DATA/keys/bus (0600), and the effective config then names that folder so each service connects as its
        own user. Each bus's aclfile (hashes only) is rendered into DATA/run at every start."""
        b = self.config.buses
        urls: dict[str, Any] = {"plain_url": b.plain_url, "sealed_url": b.sealed_url}
        specs = (("plain_url", names.PLAIN, False), ("sealed_url", names.SEALED, True))
        embedded = tuple(name for key, name, _ in specs if not urls[key])
        acl_dir = b.acl_dir
        if acl_dir is None and len(embedded) == len(specs):
            acl_dir = self.bus_acl_dir
        passwords: dict[str, dict[str, str]] = {}
        if acl_dir is not None and embedded:
            passwords = acl.ensure_passwords(acl_dir, embedded)
        elif embedded:
            log.warning("bus %s: embedded without ACL users, since a configured bus has none (buses.acl_dir is "
                        "not set)", ", ".join(embedded))
        for key, name, persist in specs:
            if urls[key]:
                log.info("bus %s: using %s", name, urls[key])
                continue
            aclfile = None
            if name in passwords:
                aclfile = self.run_dir / f"{name}.acl"
                _write_private(aclfile, acl.render_acl(name, passwords[name]))
            bus = EmbeddedBus(self.run_dir, name, persist=persist, aclfile=aclfile).start()
            self.buses.append(bus)
            urls[key] = bus.url
            if aclfile is not None:
                self._check_users(bus, passwords[name])
            log.info("bus %s: embedded at %s%s%s", name, bus.socket, " (AOF)" if persist else " (nothing on disk)",
                     f", ACL users {', '.join(passwords[name])}" if aclfile else "")
        if passwords:
            urls["acl_dir"] = acl_dir
        return self.config.model_copy(update={"buses": self.config.buses.model_copy(update=urls)})

    @staticmethod
    def _check_users(bus: EmbeddedBus, passwords: dict[str, str]) -> None:
        """Every service user can log in (a broken aclfile fails here, not as a crash loop of services)."""
        import redis

        for svc, pw in passwords.items():
            try:
                connect(bus.url, username=svc, password=pw, socket_timeout=5).ping()
            except redis.RedisError as exc:
                raise UpError(f"bus {bus.name}: user {svc} cannot log in ({exc})") from None

    def write_effective_config(self, cfg: Config) -> Path:
        from .firstrun import write_config

        path = self.run_dir / "config.yml"
        write_config(path, cfg, "# written by `sealcam up` for its services: your config with the bus URLs set.\n")
        return path

    # -- processes -------------------------------------------------------------------------------------------
    def _spawn(self, p: _Proc) -> None:
        assert self.effective_config is not None
        logf = open(p.log_path, "ab", buffering=0)  # noqa: SIM115 - closed by the pump thread
        logf.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting {p.spec.name} (restart "
                   f"{p.restarts}) ---\n".encode())
        argv = p.spec.argv(self.effective_config)
        kw: dict[str, Any] = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=str(self.data_dir))
        if self.sandbox is not None:
            p.proc, p.signal_pid = self.sandbox.popen(p.spec.name, argv, self.effective_config, self._env(),
                                                      modules=(p.spec.module,), **kw)
        else:
            p.proc = subprocess.Popen(argv, env=self._env(), **kw)
        p.started_at = time.monotonic()
        p.restart_at = None
        p.pump = threading.Thread(target=self._pump, args=(p.spec.name, p.proc.stdout, logf),
                                  name=f"log-{p.spec.name}", daemon=True)
        p.pump.start()
        log.info("%s: started (pid %d), log %s", p.spec.name, p.proc.pid, p.log_path)

    def _pump(self, name: str, stream: IO[bytes], logf: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                logf.write(raw)
                line = raw.decode(errors="replace").rstrip()
                if self.echo:
                    self.echo(name, line)
                else:
                    log.info("%-9s| %s", name, line)
        finally:
            logf.close()
            stream.close()

    def start(self) -> None:
        """Check modules, start buses, write the effective config, start services in order."""
        if not motion_wanted(self.config):
            self.services = [s for s in self.services if s.name != "motion"]
        self.check_modules()
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            cfg = self.start_buses()
            self.effective_config = self.write_effective_config(cfg)
            for spec in self.services:
                p = _Proc(spec, RestartTracker(self.policy), self.log_dir / f"{spec.name}.log")
                self.procs.append(p)
                self._spawn(p)
        except BaseException:
            self.stop()
            raise

    def poll(self) -> None:
        """One supervision round: notice exits, schedule or perform restarts, give up on fatal ones."""
        now = time.monotonic()
        for p in self.procs:
            if p.proc is not None and p.proc.poll() is not None and p.restart_at is None:
                rc = p.proc.returncode
                if p.pump:
                    p.pump.join(2)
                d = p.tracker.on_exit(rc, now - p.started_at)
                if not d.restart:
                    log.error("%s: %s", p.spec.name, d.reason)
                    self.failure = f"{p.spec.name} {d.reason} (see {p.log_path})"
                    self.stop_event.set()
                    return
                log.warning("%s: %s", p.spec.name, d.reason)
                p.restart_at = now + d.delay_s
            if p.restart_at is not None and now >= p.restart_at and not self.stop_event.is_set():
                p.restarts += 1
                self._spawn(p)

    def run(self, duration_s: float | None = None, tick_s: float = 0.1) -> int:
        """Supervise until stop_event (signal, request) or `duration_s`; stop everything; 0 if all stopped clean."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                log.info("ran for %g s; stopping", duration_s)
                break
            self.poll()
            self.stop_event.wait(tick_s)
        clean = self.stop()
        if self.failure:
            log.error("stopped because %s", self.failure)
            return 1
        return 0 if clean else 1

    def stop(self) -> bool:
        """Stop services in STOP_ORDER (others in reverse start order) with SIGTERM, grace, SIGKILL; then the
        buses. True if all stopped cleanly."""
        self.stop_event.set()
        clean = True
        order = sorted(range(len(self.procs)), key=lambda i: (
            self.procs[i].spec.stop_rank if self.procs[i].spec.stop_rank is not None else len(STOP_ORDER), -i))
        for p in (self.procs[i] for i in order):
            proc = p.proc
            if proc is None:
                continue
            if proc.poll() is None:
                log.info("%s: stopping (SIGTERM)", p.spec.name)
                _signal(proc, signal.SIGTERM, group=False, pid=p.signal_pid)
                try:
                    proc.wait(self.grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s: still running after %g s; SIGKILL", p.spec.name, self.grace_s)
                    _signal(proc, signal.SIGKILL)
                    proc.wait()
                    p.killed = True
                if proc.returncode not in CLEAN_EXIT or p.killed:
                    clean = False
                    log.warning("%s: exited with code %s", p.spec.name, proc.returncode)
                else:
                    log.info("%s: stopped", p.spec.name)
            if p.pump:
                p.pump.join(2)
        for bus in reversed(self.buses):
            bus.stop()
            if bus.socket.exists():
                bus.socket.unlink()
            log.info("bus %s: stopped", bus.name)
        self.buses.clear()
        return clean


def _write_private(path: Path, text: str) -> None:
    """Write `path` atomically, mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _signal(proc: subprocess.Popen, sig: int, group: bool = True, pid: int | None = None) -> None:
    """SIGTERM goes to the service only (it stops its own children, e.g. ffmpeg, in its own order); SIGKILL to
    its whole process group, so nothing it started outlives it. `pid`: the service's pid when it is not proc's
    (inside a sandbox; killing bwrap's group kills the sandbox too)."""
    try:
        if not group and pid is not None:
            os.kill(pid, sig)
            return
        if not group:
            raise ProcessLookupError
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass

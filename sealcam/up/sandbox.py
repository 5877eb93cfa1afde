"""`sealcam up --sandbox`: every service inside its own bubblewrap (`bwrap`) sandbox, built from its trust zone.

What a service may reach comes from `sealcam.isolation.ZONES` (buses, network, secret kinds, devices) and the
config (which files those are); nothing is re-typed here. Each sandbox gets new namespaces (`--unshare-all`:
mount, pid, ipc, uts, cgroup, net, user where possible), keeping the host network only for a zone with a
network (`--share-net`: recorder for cameras, uploader and watchdog for egress), no capabilities, a fresh
session, a cleared environment, and a filesystem of:

    read-only   /usr (and /bin, /lib... links), the venv, the code of `sealcam` and the service, a few files of
                /etc (more for a zone with a network: resolv.conf, hosts, CA certificates), the effective
                config, the zone's own secret files, other files its config section names (recipient keys,
                known_hosts, a model file)
    writable    its own state only (STATE_DIRS): crypto DATA/crypto; uploader DATA/spool* and local remotes
    sockets     the Unix sockets of the zone's buses, each bound as a single file
    private     /tmp (tmpfs, also HOME), /dev (null, zero, urandom, ...; plus /dev/videoN for the recorder), /proc

DATA (data_dir) itself is a read-only "skeleton" (`DATA/run/sandbox/<service>`, the same file system, so free
space reads true) holding only empty mount points for what is bound into it: no other file of DATA exists
inside. The root is a read-only tmpfs. bwrap does not pass SIGTERM on, so the service runs as the sandbox's
pid 1 (`--as-pid-1`) and `popen` returns that pid (from `--info-fd`) for the supervisor to signal; SIGKILL of
bwrap (`--die-with-parent`) takes the whole sandbox with it. See docs/guide/sandbox.md.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from .. import isolation
from ..config.secrets import SecretRef
from .supervisor import UpError

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("sealcam.up")

INSTALL_HINT = "--sandbox needs bubblewrap: apt install bubblewrap"
#: /etc entries every sandbox sees (if present); a zone with a network also gets ETC_NET.
ETC_BASE = ("ld.so.cache", "localtime", "nsswitch.conf", "passwd", "group", "fonts", "alternatives")
ETC_NET = ("resolv.conf", "hosts", "host.conf", "gai.conf", "ssl", "ca-certificates", "ca-certificates.conf")
#: Variables passed from the supervisor's environment when set (everything else is cleared).
ENV_PASS = ("TZ", "LANG", "LC_ALL", "SEALCAM_LOG_LEVEL", "SEALCAM_WATCHDOG_PORT")
#: Writable state per service, relative to data_dir (besides local storage folders for the uploader). Kept in
#: step with services/crypto/state.py and services/uploader/spool.py by tests/test_sandbox.py.
STATE_DIRS: dict[str, tuple[str, ...]] = {"crypto": ("crypto",), "uploader": ("spool", "spool.done", "spool.class")}
#: The sandbox's own /tmp: a fresh tmpfs, also HOME (not the host's /tmp).
PRIVATE_TMP = "/tmp"  # noqa: S108


class SandboxError(UpError):
    """The sandbox cannot be set up (no bwrap, no user namespaces, a zone that cannot be honoured)."""


@dataclass(frozen=True)
class Needs:
    """Everything one service may see of the host; the rest does not exist inside its sandbox."""

    service: str
    network: bool  # keep the host network (camera / egress); False: only a private loopback
    data_dir: Path
    ro: tuple[Path, ...] = ()  # files and folders bound read-only at their own path
    rw: tuple[Path, ...] = ()  # writable state
    sockets: tuple[Path, ...] = ()  # bus Unix sockets
    devices: tuple[Path, ...] = ()  # camera device nodes
    env_names: tuple[str, ...] = ()  # variables passed on (env: secrets of its section, ENV_PASS)


@dataclass(frozen=True)
class Host:
    """The parts of the host every sandbox gets read-only: system, venv and code folders; root symlinks."""

    system: tuple[Path, ...]  # e.g. /usr, the venv, /work/sealcam/sealcam, /work/sealcam/services
    links: tuple[tuple[str, str], ...]  # (target, link): ("usr/lib", "/lib") on a merged-/usr system
    venv_bin: Path | None = None


# ------------------------------------------------------------------------------------------------ pure: what
def needs_for(config: Config, service: str, config_file: Path) -> Needs:
    """What `service` needs, from its zone (sealcam.isolation) and the config (which reads no file)."""
    zone = isolation.ZONES.get(service)
    if zone is None:
        raise SandboxError(f"service {service!r} has no trust zone in sealcam.isolation.ZONES; cannot sandbox it")
    data_dir = Path(config.data_dir)
    allowed = isolation.allowed_secrets(service)
    ro = [config_file, *(p for p, kind in isolation.config_secrets(config).items() if kind in allowed)]
    rw = [data_dir / d for d in STATE_DIRS.get(service, ())]
    section = config.section_for(service)
    refs, paths = _walk(section)
    env_names = sorted({r.ref[len("env:"):] for r in refs if r.kind == "env"} | set(ENV_PASS))
    for key, path in paths:
        if key == "data_dir":
            continue
        if service == "uploader" and key == "path":  # a local storage folder: the remote itself
            rw.append(path)
        else:
            ro.append(path)
    if service == "crypto":  # recipients given as public key files
        ro += [Path(r) for cam in config.cameras for r in cam.recipients or () if not r.startswith("sc1")]
    sockets: list[Path] = []
    for bus in sorted(zone.buses):
        url = getattr(config.buses, f"{bus}_url")
        if url and urlsplit(url).scheme == "unix":
            sockets.append(Path(urlsplit(url).path))
        elif zone.network == "none":
            raise SandboxError(f"{service} has no network in its sandbox, so its {bus} bus must be a Unix socket "
                               f"(buses.{bus}_url is {url or 'not set'}); use the embedded buses or unix://")
    devices = isolation.config_devices(config) if zone.devices else []
    return Needs(service, zone.network != "none", data_dir, _unique(ro), _unique(rw), _unique(sockets),
                 _unique(devices), tuple(env_names))


def _walk(obj: Any, key: str = "", depth: int = 0) -> tuple[list[SecretRef], list[tuple[str, Path]]]:
    """SecretRefs and (field name, Path) pairs anywhere in a config section."""
    refs: list[SecretRef] = []
    paths: list[tuple[str, Path]] = []
    if depth > 16:
        return refs, paths
    if isinstance(obj, SecretRef):
        refs.append(obj)
    elif isinstance(obj, Path):
        paths.append((key, obj))
    elif isinstance(obj, BaseModel):
        items: Iterable[tuple[str, Any]] = ((n, getattr(obj, n)) for n in type(obj).model_fields)
        for name, value in items:
            r, p = _walk(value, name, depth + 1)
            refs += r
            paths += p
    elif is_dataclass(obj) and not isinstance(obj, type):
        for f in fields(obj):
            r, p = _walk(getattr(obj, f.name), f.name, depth + 1)
            refs += r
            paths += p
    elif isinstance(obj, Mapping):
        for name, value in obj.items():
            r, p = _walk(value, str(name), depth + 1)
            refs += r
            paths += p
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            r, p = _walk(value, key, depth + 1)
            refs += r
            paths += p
    return refs, paths


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in paths:
        p = Path(os.path.normpath(p))
        if p not in out:
            out.append(p)
    return tuple(out)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def skeleton_entries(needs: Needs) -> list[tuple[Path, bool]]:
    """Mount points to create in the data_dir skeleton: (path relative to data_dir, is a folder)."""
    out: list[tuple[Path, bool]] = []
    for paths, is_dir in ((needs.ro, None), (needs.rw, True), (needs.sockets, False)):
        for p in paths:
            if _under(p, needs.data_dir) and p != needs.data_dir:
                out.append((p.relative_to(needs.data_dir), bool(is_dir)))
    return out


def bwrap_argv(needs: Needs, host: Host, command: list[str], env: Mapping[str, str], *, skeleton: Path | None,
               info_fd: int | None = None, bwrap: str = "bwrap") -> list[str]:
    """The bubblewrap command line that runs `command` with exactly `needs` (pure; nothing is checked here).

    `skeleton`: the folder bound read-only at data_dir (None: data_dir does not exist inside at all); `env`: the
    supervisor's environment, of which only needs.env_names pass; `info_fd`: where bwrap writes the sandbox's
    pid 1 (JSON)."""
    a = [bwrap, "--die-with-parent", "--unshare-all"]
    if needs.network:
        a.append("--share-net")
    a += ["--new-session", "--cap-drop", "ALL", "--as-pid-1", "--clearenv"]
    path = ":".join([*([str(host.venv_bin)] if host.venv_bin else []), "/usr/local/bin", "/usr/bin", "/bin"])
    setenv = {"PATH": path, "HOME": PRIVATE_TMP, "TMPDIR": PRIVATE_TMP, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
              "PYTHONDONTWRITEBYTECODE": "1"}
    setenv.update({k: env[k] for k in needs.env_names if k in env})
    for k, v in setenv.items():
        a += ["--setenv", k, v]
    if info_fd is not None:
        a += ["--info-fd", str(info_fd)]
    a += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", PRIVATE_TMP]
    for d in needs.devices:
        a += ["--dev-bind-try", str(d), str(d)]
    system = sorted(_unique(host.system), key=lambda p: (len(p.parts), str(p)))
    for p in system:
        if not any(_under(p, q) for q in system if q != p):
            a += ["--ro-bind", str(p), str(p)]
    for target, link in host.links:
        a += ["--symlink", target, link]
    for name in ETC_BASE + (ETC_NET if needs.network else ()):
        a += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    if skeleton is not None:
        a += ["--ro-bind", str(skeleton), str(needs.data_dir)]
    binds = [(p, "--ro-bind-try") for p in needs.ro] + [(p, "--bind") for p in needs.rw]
    binds += [(p, "--bind") for p in needs.sockets]
    for p, flag in sorted(binds, key=lambda b: (len(b[0].parts), str(b[0]))):  # parents before children
        a += [flag, str(p), str(p)]
    a += ["--remount-ro", "/", "--chdir", str(needs.data_dir) if skeleton is not None else PRIVATE_TMP]
    return [*a, "--", *command]


# ------------------------------------------------------------------------------------------------ I/O: how
def host_layout(modules: Iterable[str] = ("sealcam",)) -> Host:
    """The read-only system part: /usr, Python's prefixes, the folders of `modules` (top-level packages)."""
    system = [Path("/usr"), Path(sys.base_prefix), Path(sys.prefix)]
    for mod in modules:
        top = mod.split(".", 1)[0]
        spec = importlib.util.find_spec(top)
        if spec is None:
            raise SandboxError(f"cannot find the code of {top!r} to bind into the sandbox")
        locs = list(spec.submodule_search_locations or ([str(Path(spec.origin).parent)] if spec.origin else []))
        system += [Path(p).resolve() for p in locs]
    links = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            links.append((os.readlink(p), str(p)))
        elif p.is_dir():
            system.append(p)
    venv_bin = Path(sys.prefix) / "bin" if sys.prefix != sys.base_prefix else None
    return Host(_unique(system), tuple(links), venv_bin)


def find_bwrap() -> str:
    found = shutil.which("bwrap")
    if not found:
        raise SandboxError(INSTALL_HINT)
    return found


def check_bwrap(bwrap: str | None = None) -> str:
    """bwrap exists and can make a network-less sandbox here; returns its path. SandboxError says why not."""
    bwrap = bwrap or find_bwrap()
    host = Host((Path("/usr"),), host_layout(()).links)
    probe = bwrap_argv(Needs("check", False, Path("/")), host, ["true"], {}, skeleton=None, bwrap=bwrap)
    try:
        res = subprocess.run(probe, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise SandboxError(f"{INSTALL_HINT} (cannot run {bwrap}: {exc.strerror})") from exc
    if res.returncode != 0:
        err = res.stderr.strip()[-400:]
        hint = ""
        if any(w in err.lower() for w in ("namespace", "uid map", "operation not permitted", "permission denied")):
            hint = ("; user namespaces seem to be disabled: enable them (sysctl kernel.unprivileged_userns_clone=1 "
                    "or user.max_user_namespaces>0; on Ubuntu 24.04 kernel.apparmor_restrict_unprivileged_userns=0), "
                    "or, inside a container, allow them (e.g. docker --security-opt seccomp=unconfined), or run "
                    "without --sandbox and isolate with the compose deployment instead")
        raise SandboxError(f"bubblewrap cannot create a sandbox here ({bwrap} exited {res.returncode}: "
                           f"{err or 'no message'}){hint}")
    return bwrap


def prepare(needs: Needs, skeleton: Path) -> None:
    """Create the writable state folders and the skeleton's mount points (only for sources that exist, so a
    missing secret stays missing inside, not an empty file)."""
    for p in needs.rw:
        _mkdirs(p)
    _mkdirs(skeleton)
    for rel, is_dir in skeleton_entries(needs):
        src = needs.data_dir / rel
        if not src.exists() and not is_dir:
            continue
        dst = skeleton / rel
        if is_dir or src.is_dir():
            _mkdirs(dst)
        elif not dst.exists():
            _mkdirs(dst.parent)
            dst.touch(mode=0o600)


def _mkdirs(path: Path) -> None:
    """mkdir -p with every folder it creates 0700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)


@dataclass
class Sandbox:
    """Builds and starts the sandbox of each service of `sealcam up` (one per data_dir)."""

    data_dir: Path
    bwrap: str = "bwrap"
    host: Host | None = None
    _configs: dict[Path, Config] | None = None

    @classmethod
    def checked(cls, data_dir: Path) -> Sandbox:
        """A Sandbox after checking that bwrap works here (SandboxError with the reason otherwise)."""
        return cls(Path(data_dir), check_bwrap())

    def skeleton(self, service: str) -> Path:
        return self.data_dir / "run" / "sandbox" / service

    def needs(self, service: str, config_file: Path) -> Needs:
        from ..config import load_config

        self._configs = self._configs or {}
        if config_file not in self._configs:
            self._configs[config_file] = load_config(config_file)
        return needs_for(self._configs[config_file], service, config_file)

    def wrap(self, service: str, argv: list[str], config_file: Path, env: Mapping[str, str],
             info_fd: int | None = None, modules: Iterable[str] = ()) -> list[str]:
        """`argv` (the service's own command) inside its sandbox; prepares the skeleton."""
        needs = self.needs(service, Path(config_file))
        host = self.host or host_layout(("sealcam", *modules))
        skel = self.skeleton(service)
        prepare(needs, skel)
        return bwrap_argv(needs, host, argv, env, skeleton=skel, info_fd=info_fd, bwrap=self.bwrap)

    def popen(self, service: str, argv: list[str], config_file: Path, env: Mapping[str, str],
              modules: Iterable[str] = (), **kw: Any) -> tuple[subprocess.Popen, int | None]:
        """Start `argv` in the sandbox of `service`; returns the process (bwrap) and the pid to send SIGTERM
        to (the service, pid 1 of the sandbox; None if bwrap failed before starting it)."""
        r, w = os.pipe()
        try:
            wrapped = self.wrap(service, argv, config_file, env, w, modules)
            needs = self.needs(service, Path(config_file))
            log.info("%s: sandboxed (bwrap, network %s, buses %s, %d read-only and %d writable paths)", service,
                     "shared" if needs.network else "none", ", ".join(p.name for p in needs.sockets) or "none",
                     len(needs.ro), len(needs.rw))
            proc = subprocess.Popen(wrapped, env=dict(env), pass_fds=(w,), **kw)
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            info = f.read()  # bwrap writes the JSON and closes the fd before running the service
        try:
            return proc, int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return proc, None

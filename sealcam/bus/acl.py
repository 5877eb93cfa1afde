"""Who may do what on each bus: one Redis ACL user per service per bus, defined here once (BRIEF §4).

The access graph is data (`ACCESS`); `render_acl` turns it into an aclfile (`--aclfile`) with SHA-256 password
hashes, never the passwords. Each user is a list of `Grant`s: the first is the user's root permissions, the
others are Redis 7 / Valkey selectors, so a command is allowed only on the keys it is granted for (the uploader
may XADD its health, but not onto `sealed:rec:*`; the watchdog may only read `sealed:rec:*`).

Every user starts from `reset` (no keys, no channels, no commands: `-@all`), gets `+@connection` minus the
admin/dangerous parts (AUTH, HELLO, PING, CLIENT SETNAME/SETINFO, SELECT...), then exactly the commands below.
Nobody gets FLUSHALL, CONFIG, KEYS, DEBUG, ACL, MODULE, SHUTDOWN; the `default` user is off. The uploader has no
user on the plain bus at all. Key patterns come from `names.py` (the only place names are defined).

    plain bus    recorder  XADD its streams, XREVRANGE (resume seq/feed state), HSET the latest init segment
                           of each video stream (`plain:init:*`), SET its heartbeat
                 motion    XREADGROUP/XACK video (frag, detect), XREVRANGE them and HGETALL `plain:init:*` (init
                           segment), XADD events, thumbnails and health, SET its heartbeat
                 crypto    XREADGROUP/XACK frag, event, thumb, health; XREVRANGE frag and HGETALL `plain:init:*`
                           (init segment); SET its heartbeat; SCAN + GET the others' heartbeats (read only),
                           forwarded as metadata
    sealed bus   crypto    XADD/trim sealed records (XLEN, XINFO GROUPS, XPENDING, XREVRANGE, XTRIM), creates
                           the uploader's group; XADD health; SET its heartbeat
                 uploader  SCAN, XREADGROUP/XACK sealed records; XADD health; SET its heartbeat; rq (`rq:*`)
                 watchdog  SCAN, XINFO (read only) on sealed records; XREADGROUP/XACK health; TIME; SET heartbeat

Password files: `<auth dir>/<bus>-<service>.pass`, one line each (`password_file_name`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import names


@dataclass(frozen=True)
class Grant:
    """Commands allowed on keys: `keys` read-write (`~`), `read_keys` read-only (`%R~`), pub/sub `channels`.
    Key-less commands (SCAN, TIME) need only the command."""

    commands: tuple[str, ...]
    keys: tuple[str, ...] = ()
    read_keys: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def rules(self) -> list[str]:
        return ([f"~{k}" for k in self.keys] + [f"%R~{k}" for k in self.read_keys]
                + [f"&{c}" for c in self.channels] + list(self.commands))


def _glob(build: Callable[[str], str]) -> str:
    """`names.plain_frag` -> `plain:frag:*`: the pattern from the one function that builds the names."""
    return build("0" * 16).rsplit(":", 1)[0] + ":*"


FRAG = _glob(names.plain_frag)
DETECT = _glob(names.plain_detect)
EVENT = _glob(names.plain_event)
THUMB = _glob(names.plain_thumb)
REC = _glob(names.sealed_rec)

#: Every user may do this much: authenticate, ping, name its connection (no CLIENT KILL/LIST, no admin).
CONNECTION = ("-@all", "+@connection", "-@admin", "-@dangerous")
#: Consumer-side stream commands (XPENDING/XAUTOCLAIM/XCLAIM for recovering a dead consumer's entries).
CONSUME = ("+xreadgroup", "+xack", "+xgroup|create", "+xpending", "+xautoclaim", "+xclaim")


def _heartbeat(service: str) -> Grant:
    return Grant(("+set",), keys=(names.heartbeat_pattern(service),))


ACCESS: dict[str, dict[str, tuple[Grant, ...]]] = {
    names.PLAIN: {
        "recorder": (
            Grant(("+xadd", "+xrevrange"), keys=(FRAG, DETECT, EVENT, names.PLAIN_HEALTH)),
            _heartbeat("recorder"),
            Grant(("+hset",), keys=(names.PLAIN_INIT_PATTERN,)),
        ),
        "motion": (
            Grant((*CONSUME, "+xrevrange"), keys=(FRAG, DETECT)),
            Grant(("+xadd",), keys=(EVENT, THUMB, names.PLAIN_HEALTH)),
            _heartbeat("motion"),
            Grant(("+hgetall",), read_keys=(names.PLAIN_INIT_PATTERN,)),
        ),
        "crypto": (
            Grant((*CONSUME, "+xrevrange", "+scan"), keys=(FRAG, EVENT, THUMB, names.PLAIN_HEALTH)),
            _heartbeat("crypto"),
            Grant(("+get",), read_keys=(names.HEARTBEAT_ANY,)),
            Grant(("+hgetall",), read_keys=(names.PLAIN_INIT_PATTERN,)),
        ),
    },
    names.SEALED: {
        "crypto": (
            Grant(("+xadd", "+xgroup|create", "+xlen", "+xinfo|groups", "+xpending", "+xrevrange", "+xtrim"),
                  keys=(REC,)),
            Grant(("+xadd",), keys=(names.SEALED_HEALTH,)),
            _heartbeat("crypto"),
        ),
        "uploader": (
            Grant((*CONSUME, "+xinfo|stream", "+xinfo|groups", "+scan"), keys=(REC,)),
            Grant(("+xadd",), keys=(names.SEALED_HEALTH,)),
            _heartbeat("uploader"),
            # rq (retention/reconcile jobs) uses hashes, lists, sorted sets, pub/sub, transactions, scripts and
            # INFO: everything but admin/dangerous, on rq's own keys and channels only.
            # Its per-backend job locks (redis-py Lock: SET NX PX, Lua release/extend) go with them.
            Grant(("+@all", "-@dangerous", "-@admin", "+info"), keys=(names.RQ_PATTERN, names.UPLOADER_LOCK_PATTERN),
                  channels=(names.RQ_PATTERN,)),
        ),
        "watchdog": (
            Grant(("+xinfo|stream", "+xinfo|groups", "+scan", "+time"), read_keys=(REC,)),
            Grant(("+xgroup|create", "+xreadgroup", "+xack"), keys=(names.SEALED_HEALTH,)),
            _heartbeat("watchdog"),
        ),
    },
}

BUSES = tuple(ACCESS)


def users(bus: str) -> tuple[str, ...]:
    """The services with a user on `bus`, in a fixed order."""
    try:
        return tuple(ACCESS[bus])
    except KeyError:
        raise ValueError(f"unknown bus {bus!r}; expected one of {', '.join(BUSES)}") from None


def pairs() -> list[tuple[str, str]]:
    """Every (bus, service) that has a user."""
    return [(bus, svc) for bus in BUSES for svc in ACCESS[bus]]


def password_file_name(bus: str, service: str) -> str:
    if service not in users(bus):
        raise ValueError(f"service {service!r} has no user on the {bus} bus")
    return f"{bus}-{service}.pass"


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def user_line(service: str, grants: tuple[Grant, ...], pw_hash: str) -> str:
    root, *selectors = grants
    parts = ["user", service, "reset", "on", f"#{pw_hash}", "resetchannels", *CONNECTION, *root.rules()]
    parts += [f"({' '.join(g.rules())})" for g in selectors]
    return " ".join(parts)


def render_acl_hashes(bus: str, hashes: Mapping[str, str]) -> str:
    """The aclfile of `bus` with the given SHA-256 hex hashes (one per service user)."""
    lines = ["user default reset off"]  # an aclfile has no comments; see deploy/redis/README.md
    for svc in users(bus):
        h = hashes.get(svc)
        if h is None:
            raise ValueError(f"no password for the {bus} bus user {svc!r}")
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ValueError(f"password hash of {svc!r} is not 64 lower-case hex digits")
        lines.append(user_line(svc, ACCESS[bus][svc], h))
    return "\n".join(lines) + "\n"


def render_acl(bus: str, passwords: Mapping[str, str]) -> str:
    """The aclfile of `bus`: `passwords` maps each service with a user there to its password (only its hash
    is written). Deterministic for fixed passwords."""
    for svc, pw in passwords.items():
        if not pw or any(c.isspace() for c in pw):
            raise ValueError(f"password of {svc!r} is empty or contains white space")
    return render_acl_hashes(bus, {svc: password_hash(pw) for svc, pw in passwords.items()})


def read_password(path: Path) -> str:
    from ..keys.secretfile import read_passphrase_file

    return read_passphrase_file(path).decode()


def ensure_passwords(acl_dir: Path, buses: tuple[str, ...] = BUSES) -> dict[str, dict[str, str]]:
    """Random passwords for every (bus, service) user of `buses`, created (0600) where missing, kept where
    present; returns bus -> service -> password."""
    from ..keys.secretfile import write_new_file

    acl_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out: dict[str, dict[str, str]] = {}
    for bus in buses:
        for svc in users(bus):
            path = acl_dir / password_file_name(bus, svc)
            if not path.exists():
                write_new_file(path, secrets.token_urlsafe(32) + "\n")
            out.setdefault(bus, {})[svc] = read_password(path)
    return out

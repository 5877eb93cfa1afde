"""Stream names, consumer groups, heartbeat keys and length bounds: defined here and nowhere else.

docs/ref/streams.md describes each; tests/test_contract.py checks the two list the same streams.
Camera ids are validated by the config (`^[a-z0-9][a-z0-9_-]{0,31}$`), handles are hex, so names built here
never contain ':' or '*' from their arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CAMERA = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_HANDLE = re.compile(r"^(?:[0-9a-f]{2}){8,32}$")
_SERVICE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

PLAIN = "plain"
SEALED = "sealed"

# Consumer groups: one per consuming service; each instance reads as its own consumer in the group.
GROUP_MOTION = "motion"
GROUP_CRYPTO = "crypto"
GROUP_UPLOADER = "uploader"
GROUP_WATCHDOG = "watchdog"

# Length bounds (XADD ... MAXLEN ~ N). They cap memory, they are not a retention policy: a consumer that
# finds a gap in `seq` after trimming records it (crypto seals a gap record).
MAXLEN_FRAG = 120  # ~2 min of 1 s fragments per camera; about 60 MB at 4 Mbit/s, in RAM only
MAXLEN_DETECT = 30  # motion only wants the present
MAXLEN_EVENT = 1000
MAXLEN_THUMB = 20  # up to 1 MiB each; crypto seals them as they come
MAXLEN_HEALTH = 1000
MAXLEN_SEALED_REC = 600  # ~10 min per camera handle while the uploader is down (it spools to disk)

HEARTBEAT_TTL_S = 15
HEARTBEAT_INTERVAL_S = 5


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"invalid {what} for a stream name: {value!r}")
    return value


def plain_frag(camera: str) -> str:
    """Record input's fMP4 fragments (VideoFragment)."""
    return f"plain:frag:{_check(_CAMERA, camera, 'camera id')}"


def plain_detect(camera: str) -> str:
    """Detect-only substream's fragments (VideoFragment); absent when the record input is also the detect one."""
    return f"plain:detect:{_check(_CAMERA, camera, 'camera id')}"


def plain_event(camera: str) -> str:
    """Feed lost/back events (FeedEvent) from the recorder and detection events (MotionEvent) from motion."""
    return f"plain:event:{_check(_CAMERA, camera, 'camera id')}"


def plain_thumb(camera: str) -> str:
    """Event thumbnails (Thumbnail) from motion, sealed by crypto."""
    return f"plain:thumb:{_check(_CAMERA, camera, 'camera id')}"


def plain_init(stream: str) -> str:
    """Hash holding the latest `init` VideoFragment published on a plain video stream (`plain_frag` or
    `plain_detect`), overwritten by the recorder at each ffmpeg start. The stream itself is trimmed
    (MAXLEN_FRAG), so after a few minutes its init entry is gone; a consumer that restarts later (crypto, motion)
    reads the init here instead of dropping everything until the camera reconnects.
    `plain:frag:cam1` -> `plain:init:frag:cam1`."""
    m = re.fullmatch(r"plain:(frag|detect):(.+)", stream)
    if m is None:
        raise ValueError(f"invalid video stream for an init key: {stream!r}")
    return f"plain:init:{m.group(1)}:{_check(_CAMERA, m.group(2), 'camera id')}"


PLAIN_INIT_PATTERN = "plain:init:*"
PLAIN_HEALTH = "plain:health"


def sealed_rec(handle: str) -> str:
    """Sealed records of one camera, named by an opaque hex handle chosen by crypto (SealedRecord)."""
    return f"sealed:rec:{_check(_HANDLE, handle, 'handle')}"


SEALED_HEALTH = "sealed:health"


def heartbeat_pattern(service: str) -> str:
    """Key pattern (Redis glob) of one service's heartbeat keys, for its ACL user."""
    return f"hb:{_check(_SERVICE, service, 'service')}:*"


HEARTBEAT_ANY = "hb:*"
#: rq's own key and channel prefix (fixed by rq): the uploader's retention/reconcile jobs on the sealed bus.
RQ_PATTERN = "rq:*"
#: The uploader's per-backend job locks (`uploader:lock:<backend>`), held by its reconcile jobs.
UPLOADER_LOCK_PREFIX = "uploader:lock:"
UPLOADER_LOCK_PATTERN = UPLOADER_LOCK_PREFIX + "*"


def uploader_lock(backend_name: str) -> str:
    """Lock key of one backend's reconcile job (backend names come from the validated config)."""
    return UPLOADER_LOCK_PREFIX + backend_name


def acl_pattern(pattern: str) -> str:
    """A StreamSpec pattern with its `{camera}`/`{handle}` part as `*`: the glob an ACL user is limited to."""
    return re.sub(r"\{[a-z]+\}", "*", pattern)


def instance_name(name: str | None = None) -> str:
    """A valid instance name (heartbeat keys, consumer names): `name`, else $SEALCAM_INSTANCE, else the host
    name, with anything outside `[A-Za-z0-9._-]` replaced and cut to 64 characters."""
    import os
    import socket

    name = name or os.environ.get("SEALCAM_INSTANCE") or socket.gethostname() or "main"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:64] or "main"


def heartbeat_key(service: str, instance: str) -> str:
    """`SET hb:SERVICE:INSTANCE <unix µs> EX HEARTBEAT_TTL_S`, refreshed every HEARTBEAT_INTERVAL_S."""
    return f"hb:{_check(_SERVICE, service, 'service')}:{_check(_INSTANCE, instance, 'instance')}"


@dataclass(frozen=True)
class StreamSpec:
    pattern: str
    bus: str
    message: str
    maxlen: int
    producers: tuple[str, ...]
    groups: tuple[str, ...]


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("plain:frag:{camera}", PLAIN, "VideoFragment", MAXLEN_FRAG, ("recorder",), (GROUP_CRYPTO, GROUP_MOTION)),
    StreamSpec("plain:detect:{camera}", PLAIN, "VideoFragment", MAXLEN_DETECT, ("recorder",), (GROUP_MOTION,)),
    StreamSpec("plain:event:{camera}", PLAIN, "FeedEvent, MotionEvent", MAXLEN_EVENT, ("recorder", "motion"),
               (GROUP_CRYPTO,)),
    StreamSpec("plain:thumb:{camera}", PLAIN, "Thumbnail", MAXLEN_THUMB, ("motion",), (GROUP_CRYPTO,)),
    StreamSpec(PLAIN_HEALTH, PLAIN, "Health", MAXLEN_HEALTH, ("recorder", "motion"), (GROUP_CRYPTO,)),
    StreamSpec("sealed:rec:{handle}", SEALED, "SealedRecord", MAXLEN_SEALED_REC, ("crypto",), (GROUP_UPLOADER,)),
    StreamSpec(SEALED_HEALTH, SEALED, "Health", MAXLEN_HEALTH, ("crypto", "uploader"), (GROUP_WATCHDOG,)),
)


def object_name(handle: str, seq: int, created_us: int) -> str:
    """Remote object name of a sealed segment: opaque handle, sequence number, coarse (hour) UTC time only.

    e.g. `3f9a.../000000000042-2026112219.seal`. Nothing in it names the camera, the content or a recipient.
    """
    import datetime as _dt

    hour = _dt.datetime.fromtimestamp(created_us // 1_000_000, _dt.UTC).strftime("%Y%m%d%H")
    return f"{_check(_HANDLE, handle, 'handle')}/{seq:012d}-{hour}.seal"

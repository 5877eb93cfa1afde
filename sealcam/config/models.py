"""Typed configuration models: one YAML file, validated at start, unknown keys rejected, limits on every field.

Secrets are never values here: every `*_file` field is a `SecretRef` (a file path or `env:VARNAME`) read by
the one service that needs it, when it needs it. docs/ref/config.md is generated from these descriptions by
scripts/gen_config_ref.py; run it after changing a field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .motion import MotionSettings
from .objects import CameraObjects, ObjectsConfig
from .secrets import SecretRef, resolve_path

CAMERA_ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"
NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
HOST = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]{2,45}\]$"
USER = r"^[A-Za-z0-9._@+-]{1,64}$"
RECIPIENT_PREFIX = "sc1"


def _path(value: Path, info: ValidationInfo) -> Path:
    return resolve_path(value, (info.context or {}).get("base_dir"))


#: A filesystem path; relative paths are relative to the config file's folder.
ConfigPath = Annotated[Path, AfterValidator(_path)]


def _recipient(value: str, info: ValidationInfo) -> str:
    value = value.strip()
    if value.startswith(RECIPIENT_PREFIX) and "/" not in value:
        from ..format.errors import KeyMaterialError
        from ..keys.encoding import decode_public

        try:
            decode_public(RECIPIENT_PREFIX, value)
        except KeyMaterialError as exc:
            raise PydanticCustomError("recipient", str(exc)) from None
        return value
    if not value:
        raise PydanticCustomError("recipient", "empty recipient")
    return str(resolve_path(value, (info.context or {}).get("base_dir")))


#: An sc1... recipient string, or the path of a file holding one or an OpenPGP public key.
RecipientSpec = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_recipient)]
Recipients = Annotated[list[RecipientSpec], Field(min_length=1, max_length=32)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_no_password(url: str, what: str) -> None:
    if urlsplit(url).password is not None:
        raise PydanticCustomError(
            "literal_secret",
            f"{what} URL contains a password; put the password in a file and name it with password_file",
        )


def _check_input_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("rtsp", "rtsps"):
        if not parts.hostname:
            raise PydanticCustomError("input_url", "rtsp URL needs a host, e.g. rtsp://192.168.1.20:554/stream1")
        _check_no_password(url, "camera")
        return url
    if parts.scheme == "v4l2":
        if not re.fullmatch(r"v4l2:///dev/video[0-9]{1,3}", url):
            raise PydanticCustomError("input_url", "v4l2 URL is v4l2:///dev/videoN")
        return url
    if parts.scheme == "synthetic":
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", parts.netloc) or parts.path:
            raise PydanticCustomError("input_url", "synthetic URL is synthetic://NAME?size=WxH&fps=N")
        for key, val in parse_qsl(parts.query, keep_blank_values=True):
            if key == "size" and (m := re.fullmatch(r"([0-9]{2,4})x([0-9]{2,4})", val)):
                if 16 <= int(m.group(1)) <= 7680 and 16 <= int(m.group(2)) <= 4320:
                    continue
            if key == "fps" and re.fullmatch(r"[0-9]{1,3}", val) and 1 <= int(val) <= 120:
                continue
            raise PydanticCustomError(
                "input_url", "synthetic URL options are size=WxH (16..7680 x 16..4320) and fps=N (1..120)"
            )
        return url
    raise PydanticCustomError("input_url", "input URL must be rtsp://, rtsps://, v4l2:///dev/videoN or synthetic://")


class CameraInput(Model):
    url: Annotated[str, AfterValidator(_check_input_url)] = Field(
        max_length=2048,
        description="Source: rtsp://[user@]host[:port]/path (copied, not transcoded), v4l2:///dev/videoN "
        "(encoded to H.264), or synthetic://NAME?size=WxH&fps=N (test pattern). No password in the URL.",
    )
    password_file: SecretRef | None = Field(
        default=None, description="RTSP password: a file path or env:VARNAME; read by the recorder only."
    )
    roles: list[Literal["record", "detect"]] = Field(
        min_length=1, max_length=2, description="What this input is for: record (sealed and stored), detect "
        "(motion/object detection reads it). Each camera has exactly one record input."
    )

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise PydanticCustomError("roles", "roles are listed twice")
        return v


class Recording(Model):
    mode: Literal["continuous", "events", "both"] = Field(
        default="continuous", description="continuous: keep everything; events: only around detected events; "
        "both: continuous plus marked events."
    )
    segment_seconds: int = Field(default=60, ge=10, le=3600, description="Length of one sealed segment (an "
                                 "independently playable file), seconds.")
    fragment_seconds: float = Field(default=1.0, ge=0.5, le=10, description="Target fMP4 fragment length, "
                                    "seconds; fragments start on key frames, so the camera's GOP bounds it below.")
    pre_roll_seconds: int = Field(default=5, ge=0, le=60, description="events mode: seconds kept before an event.")
    post_roll_seconds: int = Field(default=10, ge=0, le=600, description="events mode: seconds kept after an event.")
    max_event_seconds: int = Field(default=300, ge=10, le=86400, description="events mode: at most this many "
                                   "seconds are kept for one event (from its start minus the pre-roll); a longer "
                                   "event stops being recorded until it ends or another starts.")


class Retention(Model):
    days: int | None = Field(default=30, ge=1, le=36500, description="Delete segments older than this many "
                             "days (locally, and remotely unless the backend is WORM). null: keep forever.")
    event_days: int | None = Field(default=None, ge=1, le=36500, description="Delete segments that hold an event "
                                   "(recording modes events and both) after this many days instead. null: as days.")
    max_gb: float | None = Field(default=None, gt=0, le=1_000_000, description="Local spool quota in GB; oldest "
                                 "uploaded segments go first. null: no quota.")


class LocalStorage(Model):
    type: Literal["local"] = Field(description="A folder on this machine (a mounted disk or NAS share).")
    name: str | None = Field(default=None, pattern=NAME, description="Name of this backend in logs and health; "
                             "default TYPE-INDEX.")
    path: ConfigPath = Field(description="Folder that receives sealed segments.")


class SftpStorage(Model):
    type: Literal["sftp"] = Field(description="SFTP server; segments are appended as they are sealed.")
    name: str | None = Field(default=None, pattern=NAME, description="Name of this backend; default TYPE-INDEX.")
    host: str = Field(pattern=HOST, description="Server host name or address ([v6] in brackets).")
    port: int = Field(default=22, ge=1, le=65535, description="TCP port.")
    user: str = Field(pattern=USER, description="Login name.")
    path: str = Field(default=".", min_length=1, max_length=1024, description="Remote folder.")
    password_file: SecretRef | None = Field(default=None, description="Password: file path or env:VARNAME.")
    key_file: SecretRef | None = Field(default=None, description="SSH private key: file path or env:VARNAME.")
    known_hosts_file: ConfigPath = Field(description="known_hosts file pinning the server's host key (required: "
                                         "the uploader never trusts a host key on first use).")

    @model_validator(mode="after")
    def _one_credential(self) -> SftpStorage:
        if (self.password_file is None) == (self.key_file is None):
            raise PydanticCustomError("credential", "give exactly one of password_file and key_file")
        return self


class FtpStorage(Model):
    type: Literal["ftp"] = Field(description="FTP or FTPS server; segments are appended (APPE).")
    name: str | None = Field(default=None, pattern=NAME, description="Name of this backend; default TYPE-INDEX.")
    host: str = Field(pattern=HOST, description="Server host name or address.")
    port: int = Field(default=21, ge=1, le=65535, description="TCP port.")
    user: str = Field(pattern=USER, description="Login name.")
    password_file: SecretRef = Field(description="Password: file path or env:VARNAME.")
    path: str = Field(default="/", min_length=1, max_length=1024, description="Remote folder.")
    tls: bool = Field(default=True, description="Explicit FTPS (AUTH TLS). Footage is sealed either way; TLS "
                      "protects the password.")


class ObjectLock(Model):
    mode: Literal["governance", "compliance"] = Field(description="S3 Object Lock retention mode set on each "
                                                      "object.")
    days: int = Field(ge=1, le=36500, description="Retention period set on each object, days.")


class S3Storage(Model):
    type: Literal["s3"] = Field(description="S3-compatible object storage; objects per fragment or multipart.")
    name: str | None = Field(default=None, pattern=NAME, description="Name of this backend; default TYPE-INDEX.")
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/@]+(/[^\s@]*)?$", max_length=1024,
                                     description="Endpoint for non-AWS services (MinIO, SeaweedFS, B2...).")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket name.")
    prefix: str = Field(default="", max_length=512, pattern=r"^([A-Za-z0-9._-]+/)*$",
                        description="Key prefix, empty or ending in '/'.")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,32}$", description="Region.")
    access_key_id_file: SecretRef = Field(description="Access key id: file path or env:VARNAME.")
    secret_access_key_file: SecretRef = Field(description="Secret access key: file path or env:VARNAME. Give "
                                              "credentials that can write but not delete where you can.")
    object_lock: ObjectLock | None = Field(default=None, description="Set Object Lock retention on each object "
                                           "(the bucket must have Object Lock enabled); remote retention is "
                                           "then the bucket's, not the uploader's.")


Storage = Annotated[LocalStorage | SftpStorage | FtpStorage | S3Storage, Field(discriminator="type")]


def _bus_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        _check_no_password(url, "bus")
        return url
    if parts.scheme == "unix" and parts.path.startswith("/"):
        return url
    raise PydanticCustomError("bus_url", "bus URL is redis://HOST[:PORT][/DB], rediss://... or unix:///PATH")


BusUrl = Annotated[str | None, AfterValidator(_bus_url)]


class Buses(Model):
    plain_url: BusUrl = Field(default=None, max_length=1024, description="Plain bus (plaintext video; keeps "
                              "nothing on disk). null: an embedded server on a Unix socket under data_dir.")
    sealed_url: BusUrl = Field(default=None, max_length=1024, description="Sealed bus (ciphertext only; may "
                               "persist). null: an embedded server on a Unix socket under data_dir.")
    acl_dir: ConfigPath | None = Field(default=None, description="Folder of the buses' ACL passwords, one file "
                                        "per bus and service, named BUS-SERVICE.pass (e.g. sealed-uploader.pass), "
                                        "one line each; each service connects as its own user (named after the "
                                        "service) and reads only its own files. null: no ACL users (the server's "
                                        "default user), except that `sealcam up` with both buses embedded makes "
                                        "passwords under data_dir/keys/bus and turns ACL users on.")


class Hub(Model):
    signing_key_file: SecretRef = Field(description="The hub's signing key (sealcam keys hub-init); read by the "
                                        "crypto service only.")
    passphrase_file: SecretRef | None = Field(default=None, description="Passphrase of the signing key, if it "
                                              "is encrypted: file path or env:VARNAME.")


class Alerts(Model):
    webhook_url_file: SecretRef | None = Field(default=None, description="Generic webhook URL (POST JSON): file "
                                               "path or env:VARNAME (such URLs embed tokens).")
    ntfy_url_file: SecretRef | None = Field(default=None, description="ntfy topic URL: file path or env:VARNAME.")
    uptime_push_url_file: SecretRef | None = Field(default=None, description="Uptime-monitor push URL, pinged "
                                                   "only while everything is healthy: file path or env:VARNAME.")
    disk_min_free_gb: float = Field(default=2.0, ge=0, le=100_000, description="Alert when the spool disk has "
                                    "less free space than this, GB.")


class Camera(Model):
    id: str = Field(pattern=CAMERA_ID, description="Camera id: lower-case letters, digits, '_' and '-', up to 32.")
    inputs: list[CameraInput] = Field(min_length=1, max_length=4, description="Streams of this camera; exactly "
                                      "one with role record, at most one with role detect.")
    recipients: Recipients | None = Field(default=None, description="Who can decrypt this camera's footage: "
                                          "sc1... strings or public key files. Default: the top-level list.")
    recording: Recording | None = Field(default=None, description="What is kept of this camera (mode, pre/post "
                                        "roll, ...). Default: the top-level recording section.")
    motion: MotionSettings | None = Field(default=None, description="Motion detection settings of this camera: "
                                          "keys given here replace the top-level `motion` ones.")
    objects: CameraObjects | None = Field(default=None, description="Object detection overrides of this camera "
                                          "(enabled, classes, min_score); the model is the top-level one.")

    @field_validator("inputs")
    @classmethod
    def _roles(cls, v: list[CameraInput]) -> list[CameraInput]:
        for role, lo in (("record", 1), ("detect", 0)):
            n = sum(role in i.roles for i in v)
            if not lo <= n <= 1:
                need = "exactly one input" if lo else "at most one input"
                raise PydanticCustomError("roles", "{need} must have role '{role}' (found {n})",
                                          {"need": need, "role": role, "n": n})
        return v

    @property
    def record_input(self) -> CameraInput:
        return next(i for i in self.inputs if "record" in i.roles)

    @property
    def detect_input(self) -> CameraInput:
        """The input motion detection reads: the detect input, else the record input."""
        return next((i for i in self.inputs if "detect" in i.roles), self.record_input)


class Config(Model):
    version: Literal[1] = Field(default=1, description="Config format version.")
    data_dir: ConfigPath = Field(default=Path("/var/lib/sealcam"), description="Local state: the upload spool "
                                 "(ciphertext only) and embedded buses' sockets.")
    cameras: list[Camera] = Field(min_length=1, max_length=64, description="Cameras to record.")
    recipients: Recipients | None = Field(default=None, description="Default recipients for cameras that list "
                                          "none.")
    recording: Recording = Field(default_factory=Recording, description="What is kept and how it is cut.")
    retention: Retention = Field(default_factory=Retention, description="How long footage is kept.")
    storage: list[Storage] = Field(min_length=1, max_length=8, description="Where sealed footage goes; every "
                                   "backend receives all of it.")
    buses: Buses = Field(default_factory=Buses, description="The two message buses.")
    hub: Hub = Field(description="This recorder's signing identity.")
    alerts: Alerts = Field(default_factory=Alerts, description="Where the watchdog sends alerts.")
    motion: MotionSettings = Field(default_factory=MotionSettings, description="Motion detection defaults for "
                                   "every camera (see docs/design/motion.md).")
    objects: ObjectsConfig = Field(default_factory=ObjectsConfig, description="Object detection (YOLO) on frames "
                                   "with motion, in the motion service (see docs/guide/object-detection.md).")

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, v: list[Camera]) -> list[Camera]:
        ids = [c.id for c in v]
        if dup := sorted({i for i in ids if ids.count(i) > 1}):
            raise PydanticCustomError("unique", "camera ids must be unique: {dup}", {"dup": ", ".join(dup)})
        return v

    @field_validator("storage")
    @classmethod
    def _names(cls, v: list[Any]) -> list[Any]:
        for i, b in enumerate(v):
            if b.name is None:
                b.name = f"{b.type}-{i}"
        names = [b.name for b in v]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise PydanticCustomError("unique", "storage names must be unique: {dup}", {"dup": ", ".join(dup)})
        return v

    @model_validator(mode="after")
    def _inherit_recipients(self) -> Config:
        missing = [i for i, c in enumerate(self.cameras) if c.recipients is None]
        if missing and self.recipients is None:
            raise PydanticCustomError(
                "recipients", "camera(s) {ids} have no recipients and there is no top-level recipients list",
                {"ids": ", ".join(self.cameras[i].id for i in missing)},
            )
        for i in missing:
            self.cameras[i].recipients = list(self.recipients or [])
        return self

    @model_validator(mode="after")
    def _objects_model(self) -> Config:
        on = [c.id for c in self.cameras if c.objects is not None and c.objects.enabled]
        if on and self.objects.model is None:
            raise PydanticCustomError("model", "cameras {ids} enable objects but objects.model is not set",
                                      {"ids": ", ".join(on)})
        return self

    def objects_for(self, camera_id: str) -> ObjectsConfig:
        """A camera's object detection settings: the top-level section with the camera's overrides."""
        return self.objects.for_camera(self.camera(camera_id).objects)

    def camera(self, camera_id: str) -> Camera:
        return next(c for c in self.cameras if c.id == camera_id)

    def recording_for(self, camera_id: str) -> Recording:
        """A camera's own recording section, else the top-level one."""
        return self.camera(camera_id).recording or self.recording

    def section_for(self, service: str) -> dict[str, Any]:
        from .sections import section_for

        return section_for(self, service)

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """Every secret reference in the config, with its key path (for `config check`; values not read)."""
        out: list[tuple[str, SecretRef]] = []

        def walk(obj: Any, path: str) -> None:
            if isinstance(obj, SecretRef):
                out.append((path, obj))
            elif isinstance(obj, BaseModel):
                for name in type(obj).model_fields:
                    walk(getattr(obj, name), f"{path}.{name}" if path else name)
            elif isinstance(obj, list):
                for i, item in enumerate(obj):
                    walk(item, f"{path}[{i}]")

        walk(self, "")
        return out

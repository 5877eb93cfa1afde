"""S3-compatible object storage (boto3). S3 cannot append, so:

- live: each appended range is stored as a part object `<key>.parts/<offset:012d>` (the owner's viewer can
  follow an unfinished segment by concatenating parts, and nothing waits for the segment to close);
- final: the whole object is PUT from the spool, with Object Lock retention (mode + retain-until) when
  configured; then the part objects are deleted if deletes are allowed, else left for a lifecycle rule
  (`<prefix>*.parts/` expiry) to remove;
- `list()` reports whole objects only; `list_partial()` the contiguous bytes covered by parts of unfinished
  ones, so reconcile knows what to resend.

Deletes: with Object Lock configured the backend is WORM and never deletes (retention is the bucket's). Without
it, the first AccessDenied on a delete marks the credential as write-only, said once in the log.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .base import BackendError

log = logging.getLogger("sealcam.uploader.s3")
PARTS = ".parts/"
_PART = re.compile(r"^(.*)\.parts/([0-9]{12})$")
ERRORS = (BotoCoreError, ClientError, OSError)


class S3Backend:
    append_supported = False

    def __init__(self, cfg: Any) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix
        self.lock = cfg.object_lock
        self.can_delete = self.lock is None
        self._lock = threading.Lock()
        self._s3 = boto3.client(
            "s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region,
            aws_access_key_id=cfg.access_key_id_file.reveal(),
            aws_secret_access_key=cfg.secret_access_key_file.reveal(),
            config=BotoConfig(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": "path"}),
        )

    def _key(self, obj: str) -> str:
        return self.prefix + obj

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        try:
            return fn()
        except ERRORS as exc:
            raise BackendError(f"{self.name}: {what}: {type(exc).__name__}: {exc}") from exc

    def size(self, obj: str) -> int | None:
        def run() -> int | None:
            try:
                return int(self._s3.head_object(Bucket=self.bucket, Key=self._key(obj))["ContentLength"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

        return self._call(f"head {obj}", run)

    def append(self, obj: str, offset: int, data: bytes) -> None:
        key = f"{self._key(obj)}{PARTS}{offset:012d}"
        self._call(f"put part {obj}@{offset}", lambda: self._s3.put_object(Bucket=self.bucket, Key=key, Body=data))

    def _lock_args(self) -> dict[str, Any]:
        if self.lock is None:
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.lock.days)
        return {"ObjectLockMode": self.lock.mode.upper(), "ObjectLockRetainUntilDate": until}

    def put(self, obj: str, data: bytes) -> None:
        self._call(f"put {obj}", lambda: self._s3.put_object(Bucket=self.bucket, Key=self._key(obj), Body=data,
                                                            **self._lock_args()))

    def complete(self, obj: str, path: Path, size: int) -> None:
        def run() -> None:
            with open(path, "rb") as f:
                self._s3.put_object(Bucket=self.bucket, Key=self._key(obj), Body=f, ContentLength=size,
                                    **self._lock_args())

        self._call(f"put {obj}", run)
        if self.can_delete:
            parts = [k for k in self._keys(self._key(obj) + PARTS)]
            for k in parts:
                if not self._delete_key(k):
                    break

    def _keys(self, prefix: str) -> list[str]:
        def run() -> list[str]:
            out = []
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                out += [o["Key"] for o in page.get("Contents", [])]
            return out

        return self._call("list", run)

    def _listing(self) -> dict[str, int]:
        def run() -> dict[str, int]:
            out = {}
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for o in page.get("Contents", []):
                    out[o["Key"][len(self.prefix):]] = int(o["Size"])
            return out

        return self._call("list", run)

    def list(self) -> dict[str, int]:
        return {k: v for k, v in self._listing().items() if PARTS not in k}

    def list_partial(self) -> dict[str, int]:
        parts: dict[str, list[tuple[int, int]]] = {}
        for k, v in self._listing().items():
            m = _PART.match(k)
            if m:
                parts.setdefault(m.group(1), []).append((int(m.group(2)), v))
        out = {}
        for obj, ps in parts.items():
            extent = 0
            for off, n in sorted(ps):
                if off == extent:
                    extent += n
                elif off > extent:
                    break
            out[obj] = extent
        return out

    def _delete_key(self, key: str) -> bool:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("AccessDenied", "MethodNotAllowed", "403"):
                if self.can_delete:
                    log.warning("%s: the credential cannot delete; remote retention and part clean-up are left "
                                "to the bucket's lifecycle rules", self.name)
                self.can_delete = False
                return False
            raise BackendError(f"{self.name}: delete {key}: {exc}") from exc
        except ERRORS as exc:
            raise BackendError(f"{self.name}: delete {key}: {type(exc).__name__}: {exc}") from exc

    def delete(self, obj: str) -> None:
        if self.can_delete:
            self._delete_key(self._key(obj))

    def close(self) -> None:
        return None

"""S3-compatible object storage (boto3), read-only: ranged GETs.

The uploader stores a segment that is still being written as part objects `<key>.parts/<offset:012d>` (S3
cannot append) and PUTs the whole object when it closes. Listing therefore reports whole objects, and an
unfinished one as `live` with the contiguous bytes its parts cover; reads of a live object are served from
the parts that overlap the range.
"""

from __future__ import annotations

import bisect
import re
import threading

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .base import ObjectInfo, StorageError

PARTS = ".parts/"
_PART = re.compile(r"^(.*)\.parts/([0-9]{12})$")
_ERRORS = (BotoCoreError, ClientError, OSError)


class S3Reader:
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.url = f"s3://{bucket}/{prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        self._s3 = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=BotoConfig(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": "path"}))
        self._parts: dict[str, list[tuple[int, int]]] = {}  # live object -> its contiguous parts (offset, size)
        self._known: dict[str, dict[int, int]] = {}  # live object -> every part seen (offset -> size), holes too
        self._lock = threading.Lock()

    def _call(self, what: str, fn):  # noqa: ANN001, ANN202
        try:
            return fn()
        except _ERRORS as exc:
            raise StorageError(f"{self.url}: {what}: {type(exc).__name__}: {exc}") from exc

    def list(self, prefix: str = "", *, start_after: str | None = None) -> dict[str, ObjectInfo]:
        """With `start_after` and a folder `prefix` (live follow): one ListObjectsV2 from that name on, with
        `/` as delimiter (a live object's parts are one common prefix, not one key each), then for each live
        object one more from its newest known part on: only new keys come back, however long the folder."""
        if start_after is None or not prefix.endswith("/"):
            return self._list_all(prefix)
        keys, folders = self._call("list", lambda: self._keys(self.prefix + prefix, self.prefix + start_after, "/"))
        out = {k: ObjectInfo(k, v) for k, v in keys.items() if PARTS not in k}
        for cp in folders:
            name = cp[len(self.prefix) : -len(PARTS)] if cp.endswith(PARTS) else None
            if name is None or name in out or name <= start_after:
                continue
            with self._lock:
                known = dict(self._known.get(name, {}))
                readable = self._parts.get(name)
            # from the last part of the contiguous prefix on: parts beyond a hole are listed again until it fills
            after = f"{self.prefix}{name}{PARTS}{readable[-1][0]:012d}" if readable else None
            new, _ = self._call("list", lambda n=name, a=after: self._keys(f"{self.prefix}{n}{PARTS}", a, None))
            for k, v in new.items():
                m = _PART.match(k)
                if m:
                    known[int(m.group(2))] = v
            out[name] = self._set_live(name, known)
        with self._lock:
            for name in out:
                if not out[name].live:
                    self._known.pop(name, None)
                    self._parts.pop(name, None)
        return out

    def _keys(self, prefix: str, start_after: str | None, delimiter: str | None) -> tuple[dict[str, int], list[str]]:
        """(key relative to the reader's prefix -> size, common prefixes) of one paginated ListObjectsV2."""
        kw = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kw["StartAfter"] = start_after
        if delimiter:
            kw["Delimiter"] = delimiter
        found, folders = {}, []
        for page in self._s3.get_paginator("list_objects_v2").paginate(**kw):
            for o in page.get("Contents", []):
                found[o["Key"][len(self.prefix) :]] = int(o["Size"])
            folders += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
        return found, folders

    def _list_all(self, prefix: str) -> dict[str, ObjectInfo]:
        found, _ = self._call("list", lambda: self._keys(self.prefix + prefix, None, None))
        out = {k: ObjectInfo(k, v) for k, v in found.items() if PARTS not in k}
        parts: dict[str, dict[int, int]] = {}
        for k, v in found.items():
            m = _PART.match(k)
            if m and m.group(1) not in out:
                parts.setdefault(m.group(1), {})[int(m.group(2))] = v
        with self._lock:
            self._known = {k: v for k, v in self._known.items() if not k.startswith(prefix)}
            self._parts = {k: v for k, v in self._parts.items() if not k.startswith(prefix)}
        for name, ps in parts.items():
            out[name] = self._set_live(name, ps)
        return out

    def _set_live(self, name: str, parts: dict[int, int]) -> ObjectInfo:
        """Remember a live object's parts; it is readable up to the first hole (a part still on its way)."""
        extent, contiguous = 0, []
        for off, n in sorted(parts.items()):
            if off != extent:
                break
            contiguous.append((off, n))
            extent += n
        with self._lock:
            self._known[name] = parts
            self._parts[name] = contiguous
        return ObjectInfo(name, extent, live=True)

    def _get(self, key: str, offset: int, length: int) -> bytes:
        def run() -> bytes:
            r = self._s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
            return r["Body"].read()

        return self._call(f"read {key}", run)

    def read(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self._lock:
            parts = self._parts.get(name)
        if parts is None:
            try:
                return self._get(self.prefix + name, offset, length)
            except StorageError as exc:
                cause = exc.__cause__
                if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""
                raise
        out = []
        i = max(0, bisect.bisect_right(parts, (offset, float("inf"))) - 1)
        pos, end = offset, offset + length
        while pos < end and i < len(parts):
            p_off, p_len = parts[i]
            if p_off <= pos < p_off + p_len:
                n = min(end, p_off + p_len) - pos
                out.append(self._get(f"{self.prefix}{name}{PARTS}{p_off:012d}", pos - p_off, n))
                pos += n
            i += 1
        return b"".join(out)

    def close(self) -> None:
        return None

"""The format's own errors. Parsers of untrusted bytes raise only these (or subclasses)."""

from __future__ import annotations


class SealcamError(Exception):
    """Base of every error sealcam raises on purpose."""


class FormatError(SealcamError):
    """Bytes that are not a valid v1 container. Carries where: file offset and, if known, record index."""

    def __init__(self, message: str, *, offset: int | None = None, kind: str = "malformed") -> None:
        self.message = message
        self.offset = offset
        self.kind = kind
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")


class UnsupportedVersion(FormatError):
    def __init__(self, message: str, *, offset: int | None = 0) -> None:
        super().__init__(message, offset=offset, kind="unsupported-version")


class KeyMaterialError(SealcamError):
    """A key, identity or recipient could not be loaded or used (never includes key material)."""


class NoMatchingIdentity(KeyMaterialError):
    """None of the given identities can unwrap this segment's data key."""


class DecryptError(SealcamError):
    """A chunk failed authentication or its plaintext framing is invalid."""

    def __init__(self, message: str, *, offset: int | None = None, index: int | None = None) -> None:
        self.offset = offset
        self.index = index
        parts = [message]
        if index is not None:
            parts.append(f"chunk {index}")
        if offset is not None:
            parts.append(f"byte {offset}")
        super().__init__(", ".join(parts))

"""References to secrets: a file path or `env:VARNAME`, never the secret itself.

A `SecretRef` is what the config holds. The value is read only when a service calls `reveal()`, at the
moment it needs it; `repr`/`str` show where the secret lives (a path or a variable name), never its content.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

_ENV = re.compile(r"^env:([A-Z_][A-Z0-9_]{0,127})$")
#: Largest secret file we will read: secrets are passwords and keys, not data.
MAX_SECRET_BYTES = 64 * 1024


class SecretError(Exception):
    """A secret could not be read (missing file, unset variable, too large). Never carries the value."""


def resolve_path(text: str | Path, base_dir: Path | None) -> Path:
    """`~` expanded; relative paths are relative to `base_dir` (the config file's folder) or the cwd."""
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return Path(os.path.normpath(p))


class SecretRef:
    """Where a secret lives: `SecretRef.file(path)` or `SecretRef.env(name)`."""

    __slots__ = ("_kind", "_where")

    def __init__(self, kind: str, where: str) -> None:
        if kind not in ("file", "env"):
            raise ValueError("SecretRef kind is 'file' or 'env'")
        self._kind = kind
        self._where = where

    @classmethod
    def file(cls, path: str | Path) -> SecretRef:
        return cls("file", str(path))

    @classmethod
    def env(cls, name: str) -> SecretRef:
        return cls("env", name)

    @classmethod
    def parse(cls, text: str, base_dir: Path | None = None) -> SecretRef:
        """`env:NAME`, or a file path; a path must contain '/' (e.g. `./pw`), so a pasted password is refused."""
        if not isinstance(text, str) or not text.strip():
            raise PydanticCustomError("secret_ref", "expected a file path or env:VARNAME")
        m = _ENV.match(text)
        if m:
            return cls.env(m.group(1))
        if text.startswith("env:"):
            raise PydanticCustomError(
                "secret_ref", "env: reference needs an upper-case variable name, e.g. env:FTP_PASSWORD"
            )
        if "/" not in text or any(c in text for c in "\n\r\0"):
            # The message never repeats the value: it may be a secret pasted in the wrong place.
            raise PydanticCustomError(
                "secret_ref",
                "expected a file path containing '/' (e.g. ./secrets/pw or /run/secrets/pw) or env:VARNAME; "
                "secrets themselves never go in the config",
            )
        return cls.file(resolve_path(text, base_dir))

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def ref(self) -> str:
        """The reference as written back to YAML: the path, or `env:NAME`."""
        return self._where if self._kind == "file" else f"env:{self._where}"

    @property
    def path(self) -> Path | None:
        return Path(self._where) if self._kind == "file" else None

    def available(self) -> bool:
        """Whether the secret can be read now (file exists / variable set); reads nothing."""
        if self._kind == "env":
            return self._where in os.environ
        return Path(self._where).is_file()

    def reveal_bytes(self) -> bytes:
        """The secret, read now. One trailing newline is dropped (files written by `echo`)."""
        if self._kind == "env":
            if self._where not in os.environ:
                raise SecretError(f"environment variable {self._where} is not set")
            data = os.environ[self._where].encode()
        else:
            try:
                with open(self._where, "rb") as f:
                    data = f.read(MAX_SECRET_BYTES + 1)
            except OSError as exc:
                raise SecretError(f"cannot read secret file {self._where}: {exc.strerror}") from None
            if len(data) > MAX_SECRET_BYTES:
                raise SecretError(f"secret file {self._where} is larger than {MAX_SECRET_BYTES} bytes")
        if data.endswith(b"\r\n"):
            return data[:-2]
        return data[:-1] if data.endswith(b"\n") else data

    def reveal(self) -> str:
        try:
            return self.reveal_bytes().decode()
        except UnicodeDecodeError:
            raise SecretError(f"secret in {self!s} is not UTF-8 text") from None

    def __repr__(self) -> str:
        return f"SecretRef({self._kind}={self._where!r})"

    def __str__(self) -> str:
        return self.ref

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and (self._kind, self._where) == (other._kind, other._where)

    def __hash__(self) -> int:
        return hash((self._kind, self._where))

    def __reduce__(self) -> Any:
        return (SecretRef, (self._kind, self._where))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any, info: ValidationInfo) -> SecretRef:
            if isinstance(value, SecretRef):
                return value
            if not isinstance(value, str):
                raise PydanticCustomError("secret_ref", "expected a file path or env:VARNAME (a string)")
            base = (info.context or {}).get("base_dir")
            return cls.parse(value, base)

        return core_schema.with_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.ref)
        )

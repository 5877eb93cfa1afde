"""Storage backends: local folder, SFTP, FTP/FTPS, S3. `make_backend(storage_model)` builds one from config."""

from __future__ import annotations

from typing import Any

from .base import Backend, BackendError, OffsetMismatch


def make_backend(cfg: Any) -> Backend:
    if cfg.type == "local":
        from .local import LocalBackend

        return LocalBackend(cfg.name, cfg.path)
    if cfg.type == "sftp":
        from .sftp import SftpBackend

        return SftpBackend(cfg)
    if cfg.type == "ftp":
        from .ftp import FtpBackend

        return FtpBackend(cfg)
    if cfg.type == "s3":
        from .s3 import S3Backend

        return S3Backend(cfg)
    raise ValueError(f"unknown storage type {cfg.type!r}")


__all__ = ["Backend", "BackendError", "OffsetMismatch", "make_backend"]

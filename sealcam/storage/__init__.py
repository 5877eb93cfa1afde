"""Read-only access to the storage the uploader writes: local folder, SFTP, FTP/FTPS, S3.

    open_storage("/mnt/nas/sealcam")                       # or file:///mnt/nas/sealcam
    open_storage("sftp://cam@nas:22/footage?known_hosts=~/.ssh/known_hosts&key=~/.ssh/id_ed25519")
    open_storage("ftp://cam@nas/footage?password_file=pw.txt")   # ftps:// for explicit TLS
    open_storage("s3://bucket/prefix/?endpoint=https://s3.example&access_key_file=ak&secret_key_file=sk")

Secrets never go in the URL: passwords and keys are named by file. S3 without key files uses boto3's usual
credential chain (environment, ~/.aws). A reader can list and read; nothing here writes or deletes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .base import ObjectInfo, RangeFile, StorageError, StorageReader

__all__ = ["ObjectInfo", "RangeFile", "StorageError", "StorageReader", "open_storage", "parse_storage_url"]

_PARAMS = {
    "sftp": {"known_hosts", "key", "password_file"},
    "ftp": {"password_file"},
    "ftps": {"password_file"},
    "s3": {"endpoint", "region", "access_key_file", "secret_key_file"},
    "file": set(),
}
_PORTS = {"sftp": 22, "ftp": 21, "ftps": 21}


def _secret(path: str, what: str) -> str:
    p = Path(path).expanduser()
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise StorageError(f"cannot read {what} {p}: {exc.strerror}") from exc
    if not lines or not lines[0]:
        raise StorageError(f"{what} {p} is empty")
    return lines[0]


def parse_storage_url(url: str) -> tuple[str, dict]:
    """(scheme, fields) for a storage URL; a plain path means a local folder. Raises StorageError naming the part
    that is wrong."""
    if "://" not in url:
        return "file", {"path": url}
    u = urlsplit(url)
    scheme = u.scheme.lower()
    if scheme not in _PARAMS:
        raise StorageError(f"storage URL {url!r}: unknown scheme {scheme!r} (use a path, file://, sftp://, ftp://, "
                           "ftps:// or s3://)")
    q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
    unknown = set(q) - _PARAMS[scheme]
    if unknown:
        raise StorageError(f"storage URL: unknown parameter(s) {', '.join(sorted(unknown))} for {scheme}:// "
                           f"(known: {', '.join(sorted(_PARAMS[scheme])) or 'none'})")
    if u.password:
        raise StorageError("storage URL: put no password in the URL; use password_file=FILE")
    if scheme == "file":
        return scheme, {"path": unquote(u.path)}
    if scheme == "s3":
        if not u.hostname:
            raise StorageError(f"storage URL {url!r}: no bucket (s3://BUCKET/PREFIX)")
        return scheme, {"bucket": u.netloc, "prefix": unquote(u.path.lstrip("/")), **q}
    if not u.hostname or not u.username:
        raise StorageError(f"storage URL {url!r}: needs USER@HOST ({scheme}://USER@HOST[:PORT]/PATH)")
    try:
        port = u.port or _PORTS[scheme]
    except ValueError as exc:
        raise StorageError(f"storage URL {url!r}: bad port") from exc
    return scheme, {"host": u.hostname, "port": port, "user": unquote(u.username), "path": unquote(u.path) or "/",
                    **q}


def open_storage(url: str) -> StorageReader:
    scheme, f = parse_storage_url(url)
    if scheme == "file":
        from .local import LocalReader

        return LocalReader(Path(f["path"]).expanduser())
    if scheme == "sftp":
        from .sftp import SftpReader

        if "known_hosts" not in f:
            raise StorageError("sftp:// needs known_hosts=FILE (the server's pinned host key)")
        if "key" not in f and "password_file" not in f:
            raise StorageError("sftp:// needs key=FILE or password_file=FILE")
        return SftpReader(f["host"], f["port"], f["user"], f["path"],
                          known_hosts=Path(f["known_hosts"]).expanduser(),
                          key_file=Path(f["key"]).expanduser() if "key" in f else None,
                          password=_secret(f["password_file"], "password file") if "password_file" in f else None)
    if scheme in ("ftp", "ftps"):
        from .ftp import FtpReader

        if "password_file" not in f:
            raise StorageError(f"{scheme}:// needs password_file=FILE")
        return FtpReader(f["host"], f["port"], f["user"], f["path"], password=_secret(f["password_file"],
                         "password file"), tls=scheme == "ftps")
    from .s3 import S3Reader

    ak = _secret(f["access_key_file"], "access key file") if "access_key_file" in f else None
    sk = _secret(f["secret_key_file"], "secret key file") if "secret_key_file" in f else None
    return S3Reader(f["bucket"], f["prefix"], endpoint_url=f.get("endpoint"), region=f.get("region"),
                    access_key=ak, secret_key=sk)

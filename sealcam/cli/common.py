"""What the commands share: error reporting, passphrases, key loading, times, sizes, finding segments."""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from ..format.constants import MAGIC, RecordType
from ..format.errors import KeyMaterialError
from . import exitcodes

PROG = "sealcam"


class CliError(Exception):
    """An expected failure: printed as `sealcam: error: WHAT (WHERE)` [+ `hint: ...`], exit with `code`."""

    def __init__(self, message: str, code: int, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.where = where
        self.hint = hint


def error_line(message: str, where: str | None = None, hint: str | None = None) -> None:
    text = f"{PROG}: error: {message}" + (f" ({where})" if where else "")
    print(text, file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _strip_where(message: str, where: str | None) -> str:
    """Library messages often start with `PATH: `; the CLI puts the place in parentheses instead."""
    if where and message.startswith(f"{where}: "):
        return message[len(where) + 2 :]
    return message


def key_error(exc: KeyMaterialError, where: str | None = None) -> CliError:
    """Turn a key-loading failure into a CLI error with a hint that helps."""
    msg = _strip_where(str(exc), where)
    low = msg.lower()
    hint = None
    if "checksum" in low or "wrong length" in low or "base32" in low:
        hint = "the string has a typo or was cut short; copy it again (`sealcam keys show FILE`) or scan its QR code"
    elif "wrong passphrase" in low:
        hint = "check the passphrase (a --passphrase-file's first line is used, without the newline)"
    elif "no passphrase was given" in low or "is protected" in low:
        hint = "give --passphrase-file FILE, or run in a terminal to be asked"
    elif "neither" in low and "readable file" in low:
        hint = "give an sc1... / scsig1... string, or the path of a file holding one (or an OpenPGP public key)"
    elif "usage flag" in low:
        hint = "this OpenPGP key has no encryption (sub)key; add one with gpg --quick-add-key FINGERPRINT "\
            "cv25519 encr (or rsa3072), then export the public key again"
    elif "already exists" in low:
        hint = "choose another file name with -o, or move the old key away first"
    return CliError(msg, exitcodes.KEY, where=where, hint=hint)


# --- passphrases -------------------------------------------------------------------------------------


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def read_passphrase(path: str) -> bytes:
    from ..keys.secretfile import read_passphrase_file

    try:
        return read_passphrase_file(path)
    except KeyMaterialError as exc:
        raise key_error(exc, path) from None


def prompt_new_passphrase(what: str) -> bytes:
    """Ask twice on the terminal; refuse an empty or mismatched passphrase."""
    first = getpass.getpass(f"New passphrase for the {what}: ")
    if not first:
        raise CliError("empty passphrase", exitcodes.USAGE, hint="use --no-passphrase to store the key unprotected")
    if getpass.getpass("Repeat the passphrase: ") != first:
        raise CliError("the two passphrases differ", exitcodes.USAGE, hint="run the command again")
    return first.encode()


def passphrase_getter(passphrase_file: str | None, path: str) -> Callable[[], bytes | None]:
    """A callback the key loaders call only when the key file is protected."""

    def get() -> bytes:
        if passphrase_file:
            return read_passphrase(passphrase_file)
        if stdin_is_tty():
            return getpass.getpass(f"Passphrase for {path}: ").encode()
        raise CliError("key file is passphrase-protected and no passphrase was given", exitcodes.KEY,
                       where=path, hint="give --passphrase-file FILE, or run in a terminal to be asked")

    return get


def read_key_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise CliError("key file not found", exitcodes.KEY, where=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read key file: {getattr(exc, 'strerror', None) or exc}", exitcodes.KEY,
                       where=path) from None


def load_hub_key(path: str, passphrase_file: str | None):  # noqa: ANN201 - HubKey
    from ..keys.hub import HubKey
    from ..keys.secretfile import is_encrypted

    text = read_key_text(path)
    pw = passphrase_getter(passphrase_file, path)() if is_encrypted(text) else None
    try:
        return HubKey.load(path, pw)
    except KeyMaterialError as exc:
        raise key_error(exc, path) from None


def load_identities(identity_files: list[str], passphrase_file: str | None, gpg: bool,
                    gpg_homedir: str | None) -> list:
    from ..keys.identity import GpgIdentity, load_identity

    out = []
    for path in identity_files:
        read_key_text(path)  # a clear "not found" before the loader's generic message
        try:
            out.append(load_identity(path, passphrase_getter(passphrase_file, path)))
        except KeyMaterialError as exc:
            raise key_error(exc, path) from None
    if gpg:
        try:
            out.append(GpgIdentity(homedir=gpg_homedir))
        except KeyMaterialError as exc:
            raise key_error(exc) from None
    return out


def load_signer_pin(spec: str | None) -> bytes | None:
    if spec is None:
        return None
    from ..keys.hub import load_signer

    try:
        return load_signer(spec)
    except KeyMaterialError as exc:
        raise key_error(exc, "--signer") from None


def signer_string(pub: bytes) -> str:
    from ..keys.encoding import SIGNER_PREFIX, encode_public

    try:
        return encode_public(SIGNER_PREFIX, pub)
    except ValueError:
        return "(invalid)"


# --- times and sizes ---------------------------------------------------------------------------------


def parse_time(text: str, option: str) -> int:
    """ISO 8601 with `Z` or an offset, or epoch seconds -> UTC microseconds."""
    t = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", t):
        sec, _, frac = t.partition(".")
        return int(sec) * 1_000_000 + int((frac + "000000")[:6])
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise CliError(f"{option}: {text!r} is not a time", exitcodes.USAGE,
                       hint="use ISO 8601 with a zone (2024-05-01T12:00:00Z, ...T14:00:00+02:00) or epoch seconds"
                       ) from None
    if dt.tzinfo is None:
        raise CliError(f"{option}: {text!r} has no time zone", exitcodes.USAGE,
                       hint="add Z for UTC or an offset such as +02:00")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def fmt_time(us: int | None) -> str:
    """UTC microseconds -> `2024-05-01T12:00:00.123456Z` (fraction only when non-zero)."""
    if us is None:
        return "-"
    try:
        dt = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    except (OverflowError, OSError, ValueError):
        return f"@{us}us"
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def fmt_range(a: int, b: int) -> str:
    """`2024-05-01T12:00:01Z..12:00:05Z`: the date once when both ends share it."""
    sa, sb = fmt_time(a), fmt_time(b)
    if sa[:11] == sb[:11] and "T" in sb:
        sb = sb[11:]
    return f"{sa}..{sb}"


_SIZE = re.compile(r"([0-9]+)\s*([kmg]?)(i?b)?", re.IGNORECASE)


def parse_size(text: str, option: str, lo: int, hi: int) -> int:
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise CliError(f"{option}: {text!r} is not a size", exitcodes.USAGE, hint="e.g. 1048576, 1M, 512K, 1MiB")
    n = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if not lo <= n <= hi:
        raise CliError(f"{option}: {n} bytes is outside {lo}..{hi}", exitcodes.USAGE)
    return n


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# --- finding segment files -----------------------------------------------------------------------


def _is_segment(path: Path) -> bool:
    """A segment file: starts with the magic and its first record is not a KEYS record (a detached
    key file starts with the magic too)."""
    if path.name.endswith((".keys", ".partial")):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 5)
    except OSError:
        return False
    return head.startswith(MAGIC) and (len(head) < len(MAGIC) + 5 or head[len(MAGIC) + 4] != RecordType.KEYS)


def collect_segments(paths: Iterable[str]) -> list[Path]:
    """Files as given; directories searched recursively for *.seg and files that start with the magic."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    if (name.endswith(".seg") and f.is_file()) or _is_segment(f):
                        found.append(f)
            if not found:
                warn(f"no sealcam segments found under {path}")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise CliError("no such file or directory", exitcodes.IO, where=str(path))
    if not out:
        raise CliError("no sealcam segments to work on", exitcodes.USAGE,
                       hint="give segment files, or directories holding *.seg files")
    return out


def keys_path_for(seg: Path, keys_dir: str | None) -> Path | None:
    return Path(keys_dir) / (seg.name + ".keys") if keys_dir else None


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

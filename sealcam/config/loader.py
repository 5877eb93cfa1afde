"""Load the YAML config: parse with positions, refuse literal secrets, validate, report `FILE:LINE:COL: path: msg`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import Config

#: Largest config file read; a config is a few kB.
MAX_CONFIG_BYTES = 1024 * 1024
_SECRET_WORDS = {"password", "passwd", "pass", "secret", "token", "key", "passphrase", "credential", "credentials",
                 "apikey", "auth"}

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when unknown
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config is not valid; `problems` lists each one, `str()` gives them one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _positions(node: yaml.Node) -> tuple[dict[Loc, tuple[int, int]], list[tuple[Loc, yaml.Node]]]:
    """Map each key path to (line, col) of its key (mappings) or item (sequences); also list duplicate keys."""
    where: dict[Loc, tuple[int, int]] = {(): (node.start_mark.line + 1, node.start_mark.column + 1)}
    dups: list[tuple[Loc, yaml.Node]] = []

    def walk(n: yaml.Node, loc: Loc, depth: int) -> None:
        if depth > 64:
            return
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else "?"
                sub = (*loc, key)
                if key in seen:
                    dups.append((sub, k))
                seen.add(key)
                where.setdefault(sub, (k.start_mark.line + 1, k.start_mark.column + 1))
                walk(v, sub, depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                where[(*loc, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                walk(item, (*loc, i), depth + 1)

    walk(node, (), 0)
    return where, dups


def _literal_secrets(data: Any, loc: Loc = ()) -> list[Loc]:
    """Key paths whose key names a secret but does not end in _file: the secret itself is in the YAML."""
    found: list[Loc] = []
    if isinstance(data, dict):
        for k, v in data.items():
            words = set(re.split(r"[_\-.]", str(k).lower()))
            if words & _SECRET_WORDS and not str(k).lower().endswith("_file"):
                found.append((*loc, k))
            else:
                found += _literal_secrets(v, (*loc, k))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _literal_secrets(item, (*loc, i))
    return found


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Drop pydantic's union-tag parts (e.g. `storage.0.s3.bucket` -> `storage.0.bucket`) by walking the data."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str) and part not in cur and cur.get("type") == part:
            continue
        out.append(part)
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return tuple(out)


def _pos(where: dict[Loc, tuple[int, int]], loc: Loc) -> tuple[int, int]:
    for n in range(len(loc), -1, -1):
        if loc[:n] in where:
            return where[loc[:n]]
    return (0, 0)


def parse_config(text: str, file: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate config text; `base_dir` anchors relative paths (default: the cwd)."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = " ".join(filter(None, [exc.context, exc.problem])) or "YAML syntax error"
        raise ConfigError([Problem(file, line, col, "", f"YAML syntax error: {msg}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 0, 0, "", f"YAML error: {exc}")]) from None
    if node is None or not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError([Problem(file, line, 1, "", "the config must be a YAML mapping (key: value lines)")])

    where, dups = _positions(node)
    problems = [Problem(file, k.start_mark.line + 1, k.start_mark.column + 1, format_loc(loc), "duplicate key")
                for loc, k in dups]
    secrets = _literal_secrets(data)
    for loc in secrets:
        problems.append(Problem(
            file, *_pos(where, loc), format_loc(loc),
            f"literal secret: secrets never go in the config; put it in a file and write '{loc[-1]}_file: "
            "/path/to/file' (or env:VARNAME)",
        ))
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = _data_loc(data, tuple(err["loc"]))
            if err["type"] == "extra_forbidden" and loc in secrets:
                continue  # already reported, better, as a literal secret
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (not a sealcam setting; check spelling and indentation)"
            problems.append(Problem(file, *_pos(where, loc), format_loc(loc), msg))
    if problems:
        problems.sort(key=lambda p: (p.line, p.col))
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; relative paths inside it are relative to its folder."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem(str(p), 0, 0, "", f"cannot read config: {exc.strerror}")]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(str(p), 0, 0, "", f"config is larger than {MAX_CONFIG_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([Problem(str(p), 0, 0, "", "config is not UTF-8 text")]) from None
    return parse_config(text, str(p), p.resolve().parent)


def default_config(data_dir: str | Path) -> Config:
    """The config `sealcam up` runs with when given none: one synthetic camera, a local folder as the remote,
    embedded buses. Key files live under `data_dir` (created by `sealcam up`, not here)."""
    d = Path(data_dir).expanduser().resolve()
    return Config.model_validate({
        "data_dir": str(d),
        "cameras": [{"id": "synthetic", "inputs": [
            {"url": "synthetic://demo?size=1280x720&fps=15", "roles": ["record", "detect"]}]}],
        "recipients": [str(d / "keys" / "owner.recipient")],
        "storage": [{"type": "local", "name": "remote", "path": str(d / "remote")}],
        "hub": {"signing_key_file": str(d / "keys" / "hub.key")},
    })

"""Per-camera chain state, persisted as JSON: `<data_dir>/crypto/state-<handlehex>.json`. No key material.

next_seq: the seq the next segment gets; prev_link: hex digest of the last CLOSED segment (all zeros if none);
open_seq: the segment being written now, or null. Writes are atomic and durable: temp file, fsync, rename,
fsync of the directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from sealcam.format.constants import HASH_LEN

ZERO_LINK = "00" * HASH_LEN


@dataclass
class ChainState:
    next_seq: int = 0
    prev_link: str = ZERO_LINK
    open_seq: int | None = None
    last_us: int | None = None  # last capture time sealed (start of a RESTART gap after a crash)
    lost_first: int | None = None  # first unfinished segment not yet declared by a sealed RESTART gap

    @property
    def prev_link_bytes(self) -> bytes:
        return bytes.fromhex(self.prev_link)


class StateStore:
    def __init__(self, data_dir: str | Path, handle_hex: str) -> None:
        self.dir = Path(data_dir) / "crypto"
        self.path = self.dir / f"state-{handle_hex}.json"

    def load(self) -> ChainState:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return ChainState()
        st = ChainState(int(raw["next_seq"]), str(raw["prev_link"]), raw.get("open_seq"), raw.get("last_us"),
                        raw.get("lost_first"))
        if len(st.prev_link_bytes) != HASH_LEN or st.next_seq < 0:
            raise ValueError(f"{self.path}: corrupt chain state")
        return st

    def save(self, st: ChainState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(st), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

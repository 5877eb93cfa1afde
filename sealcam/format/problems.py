"""What a verifier can find, by kind. The kind strings are stable: tests, --json output and docs use them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Structure
MALFORMED = "malformed"  # bytes that do not parse (bad lengths, fields, order)
UNSUPPORTED_VERSION = "unsupported-version"
CORRUPT_HEADER = "corrupt-header"  # a record header's checksum fails; the reader resynchronised
TRUNCATED = "truncated"  # the file ends inside a record
MISSING_FINAL = "missing-final"  # no final chunk: cut at a record boundary, or never closed
MISSING_TRAILER = "missing-trailer"  # final chunk present but no signed trailer
# Authenticity
BAD_SIGNATURE = "bad-signature"
WRONG_SIGNER = "wrong-signer"  # validly signed, but not by the pinned hub key
HEADER_MODIFIED = "header-modified"
KEYS_MODIFIED = "keys-modified"
INDEX_MODIFIED = "index-modified"
MODIFIED = "modified"  # a record's bytes differ from what was signed (bit flip, replaced ciphertext)
UNVERIFIED = "unverified"  # records after the last valid signature (live or crashed segment)
# Order and provenance, within a segment
DROPPED = "dropped"
REORDERED = "reordered"
DUPLICATED = "duplicated"
RETIMED = "retimed"
SPLICED_SEGMENT = "spliced-segment"  # a record from another segment of the same camera
SPLICED_CAMERA = "spliced-camera"  # a record from another camera's segment
# Across the segments of one camera
REPLAYED = "replayed"  # the same segment presented again
FORKED = "forked"  # two different segments claim the same sequence number
CHAIN_BROKEN = "chain-broken"  # prev_link does not match the previous segment
MISSING_SEGMENT = "missing-segment"  # sequence numbers missing with no signed gap covering them

#: Kinds that are information, not failure.
GAP = "gap"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    message: str
    file: str | None = None
    offset: int | None = None
    index: int | None = None  # chained record (chunk) index
    seq: int | None = None  # segment sequence number

    def where(self) -> str:
        parts = [self.file or "-"]
        if self.seq is not None:
            parts.append(f"segment {self.seq}")
        if self.index is not None:
            parts.append(f"chunk {self.index}")
        if self.offset is not None:
            parts.append(f"byte {self.offset}")
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

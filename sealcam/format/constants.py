"""Every constant of container format v1, defined once.

The byte layout these names describe is specified in docs/ref/container-v1.md; keep the two in step.
"""

from __future__ import annotations

import enum

#: Every sealcam file starts with these 8 bytes. The last byte is the format's major version.
MAGIC_PREFIX = b"SEALCAM"
FORMAT_VERSION = 1
MAGIC = MAGIC_PREFIX + bytes([FORMAT_VERSION])

#: Every record starts with this sync marker, so a reader can resynchronise after corruption.
RECORD_SYNC = b"\xe5SCR"
#: sync(4) type(1) flags(1) reserved(2) body_length(4) crc32(4)
RECORD_HEADER_LEN = 16

#: Domain-separation labels: every hash, AD, signature and HPKE info starts with one of these.
LABEL_HEADER = b"sealcam/v1 header"
LABEL_CHAIN = b"sealcam/v1 chain"
LABEL_CHUNK_AD = b"sealcam/v1 chunk"
LABEL_SEGMENT = b"sealcam/v1 segment"
LABEL_CHECKPOINT = b"sealcam/v1 checkpoint"
LABEL_HPKE_INFO = b"sealcam/v1 data key"
LABEL_KEY_ID = b"sealcam/v1 key id"
LABEL_CAMERA_HANDLE = b"sealcam/v1 camera handle"

HASH_LEN = 32  # SHA-256
SIG_LEN = 64  # Ed25519
PUBKEY_LEN = 32  # Ed25519 and X25519
DATA_KEY_LEN = 32
TAG_LEN = 16  # both AEADs
NONCE_LEN = 12
HANDLE_LEN = 16
SEGMENT_ID_LEN = 16
KEY_ID_LEN = 8


class RecordType(enum.IntEnum):
    HEADER = 0x01
    KEYS = 0x02
    CHUNK = 0x03
    GAP = 0x04
    CHECKPOINT = 0x05
    INDEX = 0x06
    TRAILER = 0x07


#: Records that enter the hash chain and the index, in file order, numbered 0, 1, 2, ...
CHAINED_TYPES = frozenset({RecordType.CHUNK, RecordType.GAP})


class RecordFlag(enum.IntFlag):
    NONE = 0
    #: CHUNK: the last chained record of the segment (always a CHUNK). Bound by the AEAD's associated data.
    FINAL = 0x01
    #: CHUNK: the payload starts at a random-access point (fMP4 init or a fragment starting on a key frame).
    KEY = 0x02
    #: HEADER: the KEYS record is stored in a separate file (deleting it shreds the segment).
    KEYS_DETACHED = 0x04


#: Allowed flag bits per record type; anything else MUST be rejected.
ALLOWED_FLAGS: dict[RecordType, int] = {
    RecordType.HEADER: RecordFlag.KEYS_DETACHED,
    RecordType.KEYS: 0,
    RecordType.CHUNK: RecordFlag.FINAL | RecordFlag.KEY,
    RecordType.GAP: 0,
    RecordType.CHECKPOINT: 0,
    RecordType.INDEX: 0,
    RecordType.TRAILER: 0,
}


class Suite(enum.IntEnum):
    """AEAD used for chunks. Hash (SHA-256) and signature (Ed25519) are fixed in v1."""

    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2


class StanzaType(enum.IntEnum):
    """How a segment's data key is wrapped to one recipient."""

    #: HPKE base mode, RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    HPKE_X25519 = 1
    #: An OpenPGP message (RFC 4880 PKESK + SEIPD) whose literal data is the data key.
    OPENPGP = 2


class PayloadKind(enum.IntEnum):
    """What a chunk's plaintext carries. Encrypted, so storage cannot tell video from an event."""

    FILLER = 0  # padding-only chunk sent to keep a steady cadence
    DATA = 1  # opaque bytes (a sealed file)
    VIDEO_INIT = 2  # fMP4 initialisation segment (ftyp+moov)
    VIDEO_FRAGMENT = 3  # fMP4 fragment (moof+mdat)
    THUMBNAIL = 4  # JPEG
    EVENT = 5  # UTF-8 JSON event record
    METADATA = 6  # UTF-8 JSON: camera name, original file name, content type


#: Kinds that form the segment's continuous byte stream (what `decrypt` writes out).
STREAM_KINDS = frozenset({PayloadKind.DATA, PayloadKind.VIDEO_INIT, PayloadKind.VIDEO_FRAGMENT})


class GapReason(enum.IntEnum):
    """Why the writer knows data is missing. Visible without a key (it is signed, not encrypted)."""

    RESTART = 1  # the sealing service restarted; an unfinished segment may exist
    DROPPED = 2  # the writer dropped data (backpressure, overload)
    FEED_LOST = 3  # the camera feed was lost
    STORAGE = 4  # data was lost before sealing (spool, bus)
    NOT_RECORDING = 5  # nothing was kept on purpose (recording mode `events`, between events); nothing lost


# --- Bounds. A reader MUST reject anything over these before allocating. -------------------------

MAX_HEADER_BODY = 4096
MAX_KEYS_BODY = 1 << 20
MAX_STANZAS = 64
MAX_STANZA_BODY = 16 * 1024
MAX_CHUNK_PLAINTEXT = 32 << 20  # framed: kind(1) + payload + padding + pad_len(4)
MAX_CHUNK_BODY = 44 + MAX_CHUNK_PLAINTEXT + TAG_LEN  # clear fields + framed plaintext + tag
MAX_GAP_BODY = 1024
MAX_INDEX_ENTRIES = 1 << 20
MAX_CHAINED_RECORDS = MAX_INDEX_ENTRIES

MAX_BODY: dict[RecordType, int] = {
    RecordType.HEADER: MAX_HEADER_BODY,
    RecordType.KEYS: MAX_KEYS_BODY,
    RecordType.CHUNK: MAX_CHUNK_BODY,
    RecordType.GAP: MAX_GAP_BODY,
    RecordType.CHECKPOINT: 4 + HASH_LEN + SIG_LEN,
    RecordType.INDEX: 4 + MAX_INDEX_ENTRIES * 56,
    RecordType.TRAILER: 4 + 8 + HASH_LEN * 3 + SIG_LEN,
}

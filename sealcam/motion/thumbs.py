"""Event thumbnails: a frame as a JPEG of at most 1 MiB (contract.MAX_THUMBNAIL_BYTES)."""

from __future__ import annotations

import cv2
import numpy as np

from sealcam.bus.contract import MAX_THUMBNAIL_BYTES

QUALITIES = (85, 70, 50, 35)
MAX_WIDTH = 1280


class ThumbnailError(ValueError):
    """A frame could not be made into a JPEG within the size limit."""


def encode_jpeg(image: np.ndarray, max_bytes: int = MAX_THUMBNAIL_BYTES, max_width: int = MAX_WIDTH) -> bytes:
    """JPEG bytes of a BGR (or grey) frame; shrunk and/or lower quality until it fits `max_bytes`."""
    h, w = image.shape[:2]
    while True:
        if w > max_width:
            image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
            h, w = image.shape[:2]
        for q in QUALITIES:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])
            if not ok:
                raise ThumbnailError(f"cannot encode a {w}x{h} frame as JPEG")
            if len(buf) <= max_bytes:
                return buf.tobytes()
        if w <= 16:
            raise ThumbnailError(f"a JPEG of the frame does not fit in {max_bytes} bytes")
        max_width = w // 2

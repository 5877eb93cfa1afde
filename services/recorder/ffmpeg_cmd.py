"""The ffmpeg command line for one camera input (pure: no I/O except looking for a font file).

Every command writes fragmented MP4 to stdout (never to disk), a fragment about every `fragment_seconds`
and at every key frame (`+frag_keyframe` and `-frag_duration` both cut):

    rtsp://...            -rtsp_transport tcp -i URL -map 0:v:0 -c copy       (no decode, no transcode;
                                                                               audio is dropped for now)
    v4l2:///dev/videoN    -f v4l2 [-input_format F] -i /dev/videoN  -> libx264 ultrafast zerolatency
    synthetic://NAME?size=WxH&fps=N
                          lavfi: a still scene and a box crossing it 10 s of every 20 s (+ a burnt-in clock)
                          -> libx264 ultrafast, a key frame every fragment

The camera password (from the input's password_file) goes into the URL in memory only. `Command.argv` holds
it and must never be logged; `Command.log_form()` and `mask()` give the same text with it replaced by ***.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeMono.ttf",
)
RTSP_IO_TIMEOUT_US = 5_000_000  # ffmpeg gives up on a silent RTSP/TCP socket after this


@dataclass(frozen=True)
class Command:
    argv: list[str] = field(repr=False)  # may contain the camera password: never log it
    secrets: tuple[str, ...] = field(default=(), repr=False)
    kind: str = ""  # rtsp | v4l2 | synthetic

    def mask(self, text: str) -> str:
        return mask(text, self.secrets)

    def log_form(self) -> str:
        """The command line as one shell-quoted string, password masked: the only form that may be logged."""
        return self.mask(shlex.join(self.argv))

    def __repr__(self) -> str:
        return f"Command({self.log_form()!r})"


def mask(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """`text` with every secret (raw, and as URL-quoted in a URL) replaced by ***."""
    for s in secrets:
        if not s:
            continue
        for form in {s, quote(s, safe=""), quote(s)}:
            text = text.replace(form, MASK)
    return text


def find_fontfile(candidates: tuple[str, ...] = FONT_CANDIDATES) -> str | None:
    return next((c for c in candidates if Path(c).is_file()), None)


def output_args(fragment_seconds: float = 1.0) -> list[str]:
    # -flush_packets 1: hand each fragment over at once, not when ffmpeg's 32 KiB output buffer fills
    # (a low-bitrate camera would otherwise lag by several seconds).
    us = max(1, round(fragment_seconds * 1_000_000))
    return ["-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer",
            "-frag_duration", str(us), "-flush_packets", "1", "pipe:1"]


def encode_args(fps: int | None, fragment_seconds: float = 1.0) -> list[str]:
    """H.264 encode for raw sources: cheap, low latency, a key frame at the start of every fragment."""
    args = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"]
    if fps:
        args += ["-g", str(max(1, round(fps * fragment_seconds)))]
    # Whatever the source's frame rate, force a key frame every fragment_seconds of stream time.
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{fragment_seconds:g})"]
    return args


def _head() -> list[str]:
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]


def with_password(url: str, password: str | None) -> str:
    """`url` with the password in its userinfo (in memory only). The user name stays as configured."""
    if not password:
        return url
    p = urlsplit(url)
    hostport = p.netloc.rpartition("@")[2]
    netloc = f"{p.username or ''}:{quote(password, safe='')}@{hostport}"  # username kept as written (%-encoded)
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))


def rtsp_command(url: str, password: str | None = None, fragment_seconds: float = 1.0) -> Command:
    full = with_password(url, password)
    # -analyzeduration 1 s: ffmpeg's default 5 s of probing delays the first fragment by seconds on cameras
    # whose SDP lacks a frame rate; copying needs only the SPS/PPS.
    argv = [*_head(), "-rtsp_transport", "tcp", "-timeout", str(RTSP_IO_TIMEOUT_US), "-analyzeduration", "1000000",
            "-i", full,
            "-map", "0:v:0", "-c", "copy", *output_args(fragment_seconds)]
    return Command(argv, (password,) if password else (), "rtsp")


def v4l2_input_args(device: str, input_format: str | None = None) -> list[str]:
    args = ["-f", "v4l2"]
    if input_format:
        args += ["-input_format", input_format]
    return [*args, "-i", device]


def v4l2_command(url: str, fragment_seconds: float = 1.0, input_format: str | None = None) -> Command:
    device = urlsplit(url).path
    if not device.startswith("/dev/video"):
        raise ValueError(f"v4l2 URL must be v4l2:///dev/videoN, got {url!r}")
    argv = [*_head(), *v4l2_input_args(device, input_format), "-map", "0:v:0",
            *encode_args(None, fragment_seconds), *output_args(fragment_seconds)]
    return Command(argv, (), "v4l2")


def synthetic_params(url: str) -> tuple[int, int, int]:
    """(width, height, fps) of a synthetic:// URL; defaults 1280x720 at 15 fps."""
    w, h, fps = 1280, 720, 15
    for key, val in parse_qsl(urlsplit(url).query):
        if key == "size":
            a, b = val.lower().split("x")
            w, h = int(a), int(b)
        elif key == "fps":
            fps = int(val)
    return w, h, fps


#: The synthetic scene's cycle: the box moves for MOVE_S seconds, then rests until CYCLE_S (so motion events
#: start and end, as with someone walking through a still scene).
SYNTHETIC_MOVE_S = 10
SYNTHETIC_CYCLE_S = 20


def synthetic_filter(width: int, height: int, fps: int, fontfile: str | None) -> str:
    """A still scene (HD colour bars) with a black, white-framed box that crosses it for 10 s of every 20 s, and
    a burnt-in clock at the bottom left (too small a change to count as motion)."""
    box = max(8, height // 8)
    border = max(2, box // 10)
    phase = f"min(mod(t\\,{SYNTHETIC_CYCLE_S})\\,{SYNTHETIC_MOVE_S})"  # seconds into the move, held at its end
    graph = (f"smptehdbars=size={width}x{height}:rate={fps}[bg];"
             f"color=c=white:size={box}x{box}:rate={fps},"
             f"drawbox=x={border}:y={border}:w={box - 2 * border}:h={box - 2 * border}:color=black@1:t=fill[box];"
             f"[bg][box]overlay=x='(W-w)*{phase}/{SYNTHETIC_MOVE_S}':y='H/3-h/2+H/8*sin({phase})'")
    if fontfile:
        font = fontfile.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")
        size = max(10, height // 16)
        graph += (f",drawtext=fontfile='{font}':text='%{{localtime}}':x=8:y=h-th-8:fontsize={size}"
                  ":fontcolor=white:box=1:boxcolor=black@0.6")
    return graph


def synthetic_command(url: str, fragment_seconds: float = 1.0, fontfile: str | None | bool = True) -> Command:
    """`fontfile=True`: look for one; None/False: no clock; a path: use it."""
    w, h, fps = synthetic_params(url)
    font = find_fontfile() if fontfile is True else (fontfile or None)
    argv = [*_head(), "-re", "-f", "lavfi", "-i", synthetic_filter(w, h, fps, font),
            *encode_args(fps, fragment_seconds), *output_args(fragment_seconds)]
    return Command(argv, (), "synthetic")


def build_command(url: str, password: str | None = None, *, fragment_seconds: float = 1.0,
                  v4l2_input_format: str | None = None, fontfile: str | None | bool = True) -> Command:
    scheme = urlsplit(url).scheme
    if scheme in ("rtsp", "rtsps"):
        return rtsp_command(url, password, fragment_seconds)
    if scheme == "v4l2":
        return v4l2_command(url, fragment_seconds, v4l2_input_format)
    if scheme == "synthetic":
        return synthetic_command(url, fragment_seconds, fontfile)
    raise ValueError(f"unsupported input URL scheme {scheme!r}")

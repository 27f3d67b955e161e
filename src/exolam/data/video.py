"""PyAV video for the LeRobot layer (`data/lerobot.py`): pack episodes into mp4 files, decode frames back.

Encoding follows LeRobot's `encode_video_frames` defaults (huggingface/lerobot
`src/lerobot/datasets/video_utils.py`, checked): yuv420p, GOP 2 (`g=2`, so every other frame is a
keyframe and a random frame costs at most one extra decode), AV1 through libsvtav1 at crf 30; we add
SVT preset 10 (speed) and offer h264 through libx264 at crf 23, and `h264-lossless`: libx264rgb at
qp 0 on the RGB planes (High 4:4:4 Predictive, decoded as gbrp), bit-exact frames, for training data
that must look like what a policy sees live (App. D's renders; ~2.6 KB per 32 px frame against 0.1 at
crf 23 and 3 raw; README "Distracting Control"). `CODECS` maps our name to the encoder, its options and
pixel format; info.json records the stream's canonical codec name (`video.codec`, as LeRobot's
`get_video_info` records it: h264 for both h264 variants) and the stored pixel format. libsvtav1's banner on stderr is silenced with SVT_LOG=1 unless set.

- yuv420p halves the chroma planes, so frame height and width must be even (the writer refuses odd
  sizes; pad or crop first).
- Frame t of a file has pts t in time base 1/fps, so it is shown at t / fps seconds: an episode that
  starts after n earlier frames of the same file has `from_timestamp = n / fps` (LeRobot v3.0).
- One channel ([H, W, 1]) is encoded from the gray image (neutral chroma) and decoded as the luma
  plane; `video.channels` says 1. LeRobot's own reader would return three equal channels.

Decoding: `VideoReader` keeps one demuxer/decoder per file and a cursor (the index of the frame it
decoded last): a requested frame up to `SEEK_GAP` frames ahead is reached by decoding forward, any
other by seeking to the keyframe at or before it. Codec and colour conversion run single-threaded
(`threads`, 1 by default: DataLoader workers are the parallelism); one reused swscale context per
reader is 3x faster on 64x64 frames than PyAV's `to_ndarray` (a new, multi-threaded one per frame).
`open_reader` caches readers per process; a forked worker sets its parent's aside without using or
freeing them (freeing FFmpeg state inherited across fork can wait forever on threads that did not
survive the fork). A file that cannot be opened or decoded, or that holds fewer frames than asked
for, raises ConfigError naming the file.
"""

from __future__ import annotations

import collections
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from exolam.errors import ConfigError

# info.json name -> (PyAV encoder, options). Both encoders run single-threaded, so a file's bytes do
# not depend on the machine's core count (collection is parallel across processes, --jobs). Even so,
# libx264 occasionally encodes identical frames to another bitstream on some CPUs (README, "Datasets").
CODECS = {
    "av1": ("libsvtav1", {"g": "2", "crf": "30", "preset": "10", "svtav1-params": "lp=1"}),
    "h264": ("libx264", {"g": "2", "crf": "23", "threads": "1"}),
    "h264-lossless": ("libx264rgb", {"g": "2", "qp": "0", "threads": "1"}),
}
PIX_FMT = "yuv420p"
PIX_FMTS = {"h264-lossless": "rgb24"}  # the encoder's input where it is not PIX_FMT
STORED = {"h264-lossless": ("h264", "gbrp")}  # info.json (video.codec, video.pix_fmt) where not (name, PIX_FMT)


def stored_as(codec: str) -> tuple[str, str]:
    """(video.codec, video.pix_fmt) that info.json records for frames written with `codec`."""
    return STORED.get(codec, (codec, PIX_FMT))
SEEK_GAP = 8  # decode forward instead of seeking when the next frame is at most this far ahead
CACHE_SIZE = 32  # open readers per process (v2.1 has one file per episode and camera)


def decodable(codec: str) -> bool:
    """Whether PyAV's FFmpeg has a decoder for `codec` (an info.json `video.codec` or a stream's codec)."""
    try:
        av.Codec(codec, "r")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


class VideoFileWriter:
    """One mp4 being filled with the frames of consecutive episodes; `frames` counts them so far."""

    def __init__(self, path: Path, codec: str, fps: int, height: int, width: int, channels: int):
        encoder, options = CODECS[codec]
        if channels == 1 and codec in PIX_FMTS:
            raise ConfigError(f"codec {codec}: stores RGB frames; one-channel video needs h264 or av1")
        os.environ.setdefault("SVT_LOG", "1")  # libsvtav1 prints its whole config to stderr otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames, self.bytes = path, 0, 0
        self._gray = channels == 1
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream(encoder, rate=Fraction(fps))
        self._pix_fmt = PIX_FMTS.get(codec, PIX_FMT)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, self._pix_fmt
        self._stream.codec_context.time_base = Fraction(1, fps)
        self._stream.options = dict(options)
        self._to_yuv = VideoReformatter()  # one swscale context, single-threaded (PyAV's default is one per frame)

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames [T, H, W, C]."""
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[..., 0] if self._gray else img),
                                               format="gray" if self._gray else "rgb24")
            if self._pix_fmt != "rgb24":
                frame = self._to_yuv.reformat(frame, format=self._pix_fmt, threads=1)
            frame.pts = self.frames
            self.frames += 1
            self._mux(self._stream.encode(frame))

    def _mux(self, packets) -> None:
        for p in packets:
            self.bytes += p.size
            self._container.mux(p)

    def close(self) -> None:
        self._mux(self._stream.encode())  # flush the encoder
        self._container.close()

    def abort(self) -> None:
        """Close without flushing (the write failed; the file is about to be removed)."""
        try:
            self._container.close()
        except av.error.FFmpegError:
            pass


class VideoReader:
    """Frames of one video file by index (frame i shown at i / fps)."""

    def __init__(self, path: Path, fps: float, threads: int = 1):
        self.path, self.fps = Path(path), fps
        try:
            self._container = av.open(str(path), "r")
        except FileNotFoundError:
            raise ConfigError(f"{path}: missing") from None
        except av.error.FFmpegError as e:
            raise ConfigError(f"{path}: cannot be opened as a video ({_why(e)}); truncated or not an mp4?") from None
        if not self._container.streams.video:
            self._container.close()
            raise ConfigError(f"{path}: holds no video stream")
        self._stream = self._container.streams.video[0]
        ctx = self._stream.codec_context
        self.codec = self._stream.codec.canonical_name if ctx is not None else "unknown"
        if ctx is None or not decodable(self.codec):
            self._container.close()
            raise ConfigError(f"{path}: its video codec '{self.codec}' cannot be decoded by this PyAV/FFmpeg build")
        ctx.thread_count = threads
        self.height, self.width = self._stream.height, self._stream.width
        self.num_frames = int(self._stream.frames)  # from the container header; 0 when it does not say
        self._time_base = self._stream.time_base
        self._frames = None  # the decode iterator
        self._pos = None  # index of the frame decoded last
        self._last = None  # (index, format, array) of the frame returned last
        self._to_rgb = VideoReformatter()  # one swscale context, single-threaded: 3x faster on small frames

    def read(self, indices, gray: bool = False) -> list[np.ndarray]:
        """uint8 [H, W, C] frames at these file frame indices (any order; C = 1 when gray)."""
        return [self._read_one(int(i), gray) for i in indices]

    def _read_one(self, target: int, gray: bool) -> np.ndarray:
        if self._last is not None and self._last[:2] == (target, gray):
            return self._last[2]
        if self._pos is None or not self._pos < target <= self._pos + SEEK_GAP:
            self._seek(target)
        try:
            for frame in self._frames:
                if frame.pts is None:
                    raise ConfigError(f"{self.path}: holds frames without timestamps (pts)")
                self._pos = round(float(frame.pts * self._time_base) * self.fps)
                if self._pos == target:
                    img = self._to_rgb.reformat(frame, format="gray" if gray else "rgb24", threads=1).to_ndarray()
                    self._last = (target, gray, img[..., None] if gray else img)
                    return self._last[2]
                if self._pos > target:
                    raise ConfigError(f"{self.path}: frame {target} (at {target / self.fps:.4f} s) is missing; "
                                      f"the next frame shown is {self._pos}")
        except av.error.FFmpegError as e:
            self._pos = None
            raise ConfigError(f"{self.path}: cannot be decoded near frame {target} ({_why(e)}); truncated?") from None
        self._pos = None
        raise ConfigError(f"{self.path}: ends before frame {target} (at {target / self.fps:.4f} s)")

    def _seek(self, target: int) -> None:
        pts = round(Fraction(target) / Fraction(self.fps) / self._time_base)
        try:
            self._container.seek(max(pts, 0), stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise ConfigError(f"{self.path}: cannot seek to frame {target} ({_why(e)})") from None
        self._frames = self._container.decode(self._stream)
        self._pos = None

    def close(self) -> None:
        self._container.close()


_readers: collections.OrderedDict = collections.OrderedDict()
_readers_pid = None
_inherited: list = []  # readers a forked process inherited (kept alive on purpose, see open_reader)


def open_reader(path: Path, fps: float, threads: int = 1) -> VideoReader:
    """The cached reader of `path` in this process (least recently used ones are closed)."""
    global _readers_pid
    if _readers_pid != os.getpid():  # a forked worker: set the parent's readers aside, never use or free them
        _inherited.append(list(_readers.values()))  # freeing them joins FFmpeg threads that do not exist here
        _readers.clear()
        _readers_pid = os.getpid()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing") from None
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, float(fps), threads)  # a rewritten file is reopened
    reader = _readers.pop(key, None) or VideoReader(path, fps, threads)
    _readers[key] = reader
    while len(_readers) > CACHE_SIZE:
        _readers.popitem(last=False)[1].close()
    return reader


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)

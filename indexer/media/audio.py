"""Decode sound (audio files and videos' soundtracks) with PyAV into encoder windows.

Decoding streams packet by packet: each decoded frame goes through libswresample (via
PyAV's ``AudioResampler``) to planar float32 at the target rate, keeping its channels,
and is then downmixed to mono here. Memory stays bounded by about one window plus one
frame whatever the file's length.

Downmix
-------
We average the channels (``mono = mean(channels)``), so L = R = x gives exactly x and a
sound in one channel only comes out at half amplitude. We do not ask the resampler for
``layout="mono"``: with float output libswresample's default stereo-to-mono matrix is
``(L + R) / sqrt(2)`` (measured with s16, flt and fltp input: L = R = 0.5 sine gives a
0.707 sine), 3 dB louder than either channel. Multichannel (5.1 ...) is averaged the
same way, LFE included.

Windows and times
-----------------
:func:`audio_windows` cuts the mono stream into fixed windows (ImageBind's audio encoder
takes 2 s at 16 kHz). Times come from sample counts (``start = n / sample_rate``), with
0 at the first decoded sample of the stream; timestamp gaps inside a stream are not
filled. Encoder delay is dropped where the container says so (MP4 edit lists), but AAC's
end padding is not: three_shots.mp4 (24.000 s) decodes to 24.009 s, a tail shorter than
``min_tail_s`` that makes no window. The last partial window is zero-padded; its
``end`` is the true end of the audio. Silent windows are marked (``silent``), never
dropped.

Damaged files
-------------
Undecodable packets are skipped (and summarised in ``problems``) up to
:data:`loupe.indexer.media.av_stream.MAX_DECODE_ERRORS` in a row; a demuxer error ends the stream.
So a truncated file yields what decodes (its prefix) and reports it in ``problems``
where it can tell (a cut Ogg file cannot be told: FFmpeg takes its duration from the
last page present); :class:`AudioDecodeError` is raised when the file cannot be
opened, has no audio stream, or yields no samples at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from loupe.indexer.media.av_stream import StreamReader, av_reason, declared_duration

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_SILENCE_DB = -50.0
DB_FLOOR = -200.0  # rms_db of digital silence (instead of -inf, which JSON cannot hold)
_TAIL_SLACK_S = 0.5  # a stream ending earlier than this before its declared end is reported

# ImageBind's audio preprocessing constants (imagebind/data.py, load_and_transform_audio_data
# and waveform2melspec).
IMAGEBIND_NUM_MEL_BINS = 128
IMAGEBIND_TARGET_LENGTH = 204
IMAGEBIND_MEAN = -4.268
IMAGEBIND_STD = 9.138
IMAGEBIND_CLIP_S = 2.0


class AudioDecodeError(Exception):
    """A file whose sound cannot be decoded; the message is the one-line reason."""


@dataclass
class AudioInfo:
    """Facts about a file's (first / default) audio stream, from its headers."""

    duration: float | None  # seconds; None when the container does not say
    sample_rate: int  # of the source
    channels: int
    layout: str  # "mono", "stereo", "5.1"...
    codec: str  # FFmpeg decoder name: "vorbis", "aac", "opus", "pcm_s16le"...


@dataclass
class AudioChunk:
    """A run of decoded mono samples at the reader's sample rate."""

    samples: np.ndarray  # (n,) float32, nominally in [-1, 1]
    offset: int  # index of samples[0] in the decoded stream (0 = first decoded sample)


@dataclass
class AudioWindow:
    """One encoder window of mono audio."""

    index: int  # 0-based
    start: float  # seconds, start_sample / sample_rate
    end: float  # seconds; the true end of the audio for a padded last window
    samples: np.ndarray  # (window samples,) float32; zero-padded after num_samples
    num_samples: int  # real samples at the front of ``samples``
    rms_db: float  # RMS level of the real samples in dBFS (1.0 = full scale); >= DB_FLOOR
    silent: bool  # rms_db below the silence threshold

    @property
    def valid(self) -> np.ndarray:
        """The real samples, without the zero padding (a view)."""
        return self.samples[: self.num_samples]


def _open(path: str | os.PathLike) -> tuple[av.container.InputContainer, av.AudioStream]:
    """Open a file and return it with its audio stream, or raise AudioDecodeError."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError as e:
        raise AudioDecodeError(f"file not found: {path}") from e
    except OSError as e:
        raise AudioDecodeError(f"cannot read: {av_reason(e)}") from e
    if size == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as e:
        raise AudioDecodeError(f"cannot open as audio or video: {av_reason(e)}") from e
    except Exception as e:  # OSError, UnicodeDecodeError from odd metadata...
        raise AudioDecodeError(f"cannot open as audio: {type(e).__name__}: {e}") from e
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise AudioDecodeError(f"no audio stream (streams: {', '.join(kinds)})")
    try:
        stream = container.streams.best("audio") or container.streams.audio[0]
    except Exception:
        stream = container.streams.audio[0]
    return container, stream


def _info(container: av.container.InputContainer, stream: av.AudioStream) -> AudioInfo:
    cc = stream.codec_context
    layout = cc.layout
    return AudioInfo(
        duration=declared_duration(container, stream),
        sample_rate=int(cc.sample_rate or stream.rate or 0),
        channels=int(layout.nb_channels if layout is not None else cc.channels),
        layout=layout.name if layout is not None else "",
        codec=cc.name,
    )


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Duration, source sample rate, channels and codec of a file's audio, from headers only.

    Raises :class:`AudioDecodeError` for unreadable files and files without audio.
    """
    container, stream = _open(path)
    try:
        return _info(container, stream)
    finally:
        container.close()


class _MonoResampler:
    """Frames of any format/layout/rate -> mono float32 numpy at ``rate``.

    A resampler is fixed to its first frame's format; when a stream changes format,
    layout or rate midway (some broadcast and concatenated files do), the old one is
    flushed and a new one started.
    """

    def __init__(self, rate: int):
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._key: tuple | None = None

    @staticmethod
    def _mono(frames: list[av.AudioFrame]) -> Iterator[np.ndarray]:
        for f in frames:
            if f.samples:
                planes = f.to_ndarray()  # (channels, n) float32 for fltp
                yield planes[0].copy() if len(planes) == 1 else planes.mean(axis=0,
                                                                            dtype=np.float32)

    def push(self, frame: av.AudioFrame) -> Iterator[np.ndarray]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            yield from self.flush()
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout,
                                                rate=self.rate)
            self._key = key
        assert self._resampler is not None
        yield from self._mono(self._resampler.resample(frame))

    def flush(self) -> Iterator[np.ndarray]:
        if self._resampler is not None:
            yield from self._mono(self._resampler.resample(None))
            self._resampler = None
            self._key = None


class AudioReader(StreamReader):
    """Iterator of :class:`AudioChunk`: a file's sound as mono float32 at ``sample_rate``.

    Opening happens in the constructor, so a file that cannot be read raises
    :class:`AudioDecodeError` at once; a stream that yields no samples at all raises it
    at the end of iteration. After (or during) iteration: ``problems`` lists what went
    wrong, one line each (empty when the file decoded cleanly), ``samples_decoded``
    counts output samples, and ``complete`` is True once the stream was decoded to its
    declared end without errors.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE):
        if not (isinstance(sample_rate, int) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive int, not {sample_rate!r}")
        super().__init__()
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.samples_decoded = 0
        self._container, self._stream = _open(self.path)
        self.info = _info(self._container, self._stream)
        self._gen = self._run()

    @property
    def duration(self) -> float:
        """Seconds decoded so far (the whole stream once iteration has ended)."""
        return self.samples_decoded / self.sample_rate

    def _run(self) -> Iterator[AudioChunk]:
        mixer = _MonoResampler(self.sample_rate)
        try:
            for frame in self._decode_tolerant("audio "):
                for mono in mixer.push(frame):
                    yield self._chunk(mono)
            for mono in mixer.flush():
                yield self._chunk(mono)
        except av.FFmpegError as e:  # resampler / filter graph trouble
            self._problem(f"resampling failed: {av_reason(e)}")
            self.complete = False
        finally:
            self._container.close()
        if self.samples_decoded == 0:
            why = f": {self.problems[0]}" if self.problems else ""
            raise AudioDecodeError(f"audio stream decoded to no samples{why}")
        declared = self.info.duration
        if declared is not None and self.duration < declared - _TAIL_SLACK_S:
            self._problem(f"audio ends at {self.duration:.2f} s but the file declares "
                          f"{declared:.2f} s (truncated?)")
            self.complete = False

    def _chunk(self, mono: np.ndarray) -> AudioChunk:
        chunk = AudioChunk(samples=mono, offset=self.samples_decoded)
        self.samples_decoded += len(mono)
        return chunk


def decode_audio(path: str | os.PathLike,
                 sample_rate: int = DEFAULT_SAMPLE_RATE) -> AudioReader:
    """Stream a file's sound (an audio file, or a video's soundtrack) as mono float32.

    Returns an :class:`AudioReader`: iterate it for :class:`AudioChunk` runs of samples at
    ``sample_rate`` (channels averaged, see the module docstring). Raises
    :class:`AudioDecodeError` at once for a file that cannot be opened or has no audio.
    """
    return AudioReader(path, sample_rate)


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS relative to amplitude 1.0 (a full-scale sine is -3.01 dB).

    Digital silence (and an empty array) gives :data:`DB_FLOOR`.
    """
    if len(samples) == 0:
        return DB_FLOOR
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return max(DB_FLOOR, 20.0 * math.log10(rms)) if rms > 0 else DB_FLOOR


class AudioWindows:
    """Iterator of :class:`AudioWindow`; see :func:`audio_windows`.

    ``reader`` is the underlying :class:`AudioReader` (its ``problems``, ``complete`` and
    ``info`` describe the file).
    """

    def __init__(self, path: str | os.PathLike, window_s: float = IMAGEBIND_CLIP_S,
                 hop_s: float | None = None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 silence_db: float = DEFAULT_SILENCE_DB, min_tail_s: float = 0.1):
        hop_s = window_s if hop_s is None else hop_s
        self.window = round(window_s * sample_rate)
        self.hop = round(hop_s * sample_rate)
        if self.window <= 0 or self.hop <= 0:
            raise ValueError(f"window_s and hop_s must be positive, not {window_s}, {hop_s}")
        self.min_tail = max(1, round(min_tail_s * sample_rate))
        self.sample_rate = sample_rate
        self.silence_db = silence_db
        self.reader = AudioReader(path, sample_rate)  # raises before iteration starts
        self._gen = self._run()

    def __iter__(self) -> AudioWindows:
        return self

    def __next__(self) -> AudioWindow:
        return next(self._gen)

    def close(self) -> None:
        """Stop early and release the file."""
        self._gen.close()
        self.reader.close()

    def __enter__(self) -> AudioWindows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self, index: int, start: int, data: np.ndarray) -> AudioWindow:
        n = len(data)
        if n == self.window:
            samples = np.array(data, dtype=np.float32)  # a copy: not a view of the buffer
        else:
            samples = np.zeros(self.window, dtype=np.float32)
            samples[:n] = data
        db = level_db(data)
        return AudioWindow(index=index, start=start / self.sample_rate,
                           end=(start + n) / self.sample_rate, samples=samples,
                           num_samples=n, rms_db=db, silent=db < self.silence_db)

    def _run(self) -> Iterator[AudioWindow]:
        win, hop = self.window, self.hop
        pending: list[np.ndarray] = []
        pending_len = 0
        buf_start = 0  # stream index of pending[0][0]
        next_start = 0  # stream index where the next window starts
        last_end = 0  # stream index where the last emitted window ends
        index = 0
        for chunk in self.reader:
            pending.append(chunk.samples)
            pending_len += len(chunk.samples)
            while buf_start + pending_len >= next_start + win:
                buf = pending[0] if len(pending) == 1 else np.concatenate(pending)
                lo = next_start - buf_start
                yield self._make(index, next_start, buf[lo:lo + win])
                index += 1
                last_end = next_start + win
                next_start += hop
                drop = min(next_start - buf_start, len(buf))
                buf = buf[drop:]
                buf_start += drop
                pending = [buf] if len(buf) else []
                pending_len = len(buf)
        total = buf_start + pending_len
        # One partial window for the tail, if it holds enough audio no window covered yet
        # (with overlapping windows, later partial windows would add nothing new).
        if next_start < total and (index == 0 or total - max(last_end, next_start)
                                   >= self.min_tail):
            buf = np.concatenate(pending) if pending else np.zeros(0, np.float32)
            yield self._make(index, next_start, buf[next_start - buf_start:])


def audio_windows(path: str | os.PathLike, window_s: float = IMAGEBIND_CLIP_S,
                  hop_s: float | None = None, sample_rate: int = DEFAULT_SAMPLE_RATE,
                  silence_db: float = DEFAULT_SILENCE_DB,
                  min_tail_s: float = 0.1) -> AudioWindows:
    """Cut a file's sound into the audio encoder's windows, streaming.

    Windows of ``window_s`` seconds start every ``hop_s`` seconds (default: ``window_s``,
    no overlap). Every full window is emitted; then one zero-padded window for the tail if
    it holds at least ``min_tail_s`` seconds not covered by an earlier window, and always
    one window for a file shorter than ``window_s``. ``silent`` marks windows whose RMS
    level (over the real samples, not the padding) is below ``silence_db`` dBFS.

    For ImageBind parity on a padded window pass ``window.valid`` (not ``window.samples``)
    to :func:`kaldi_fbank`: ImageBind pads the spectrogram, not the waveform.
    Raises :class:`AudioDecodeError` at once for a file that cannot be opened or has no
    audio stream, and at the end for a stream that yields no samples.
    """
    return AudioWindows(path, window_s, hop_s, sample_rate, silence_db, min_tail_s)

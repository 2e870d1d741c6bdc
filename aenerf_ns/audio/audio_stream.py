"""Per-video-frame audio features computed incrementally, while the audio is still arriving.

`compute_audio_features` sees a whole file; a live stream does not. `StreamingFeatures` asks the run's feature
extractor for its streaming function (`feature_registry`), which computes each encoder frame once its window has
arrived (log-mel: `log_mel.LogMelStream`), and emits a video frame's feature window as soon as every encoder frame
in it exists. Each chunk therefore costs only the frames and windows it completes, and the numbers are the batch
computation's: the extractor's stream ends as its whole-clip loader does (log-mel: the end padded by half a
window), so a stream fed a whole file in any chunking gives `compute_audio_features` of that file (with the same
normalisation).

Normalisation cannot use the statistics of a clip that has not finished: the stream either uses fixed per-band
statistics given to it (e.g. those of the whole file, which reproduces the batch numbers) or, by default, the
running statistics of everything received so far, applied to each encoder frame once, when it is computed.

Only extractors with a streaming function stream (``logmel``); wav2vec2/HuBERT see the whole utterance at once,
and a stream asked of them is refused with an error that names the ones that do.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_features import AudioFeatureConfig
from aenerf_ns.audio.audio_io import TARGET_SAMPLE_RATE, AudioError, check_finite
from aenerf_ns.audio.feature_registry import get_extractor, streaming_names


class RunningStats:
    """Per-band mean and standard deviation of every encoder frame seen so far (the stream's normalisation)."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.total = np.zeros(dim, np.float64)
        self.total_sq = np.zeros(dim, np.float64)

    def update(self, frames: Float[np.ndarray, "n dim"]) -> None:
        self.count += len(frames)
        self.total += frames.sum(0)
        self.total_sq += (frames.astype(np.float64) ** 2).sum(0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / max(self.count, 1)
        var = np.maximum(self.total_sq / max(self.count, 1) - mean**2, 0.0)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


class StreamingFeatures:
    """Audio in (16 kHz mono float chunks), feature windows of whole video frames out, in order.

    Args:
        config: the training run's audio settings (its extractor must stream, e.g. ``logmel``).
        fps: video frame rate the windows are aligned to.
        stats: fixed per-band (mean, std) to normalise with; None: running statistics (when
            ``config.normalize``).
    """

    def __init__(
        self,
        config: AudioFeatureConfig | None = None,
        fps: float = 25.0,
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.config = config or AudioFeatureConfig()
        extractor = get_extractor(self.config.encoder)
        if extractor.stream is None or extractor.dim is None:
            raise AudioError(
                f"audio encoder {extractor.name!r} does not stream: it looks at the whole utterance at once. "
                f"Extractors that stream: {', '.join(streaming_names())}. Load the finished file with "
                "'Load audio file' instead."
            )
        if fps <= 0:
            raise AudioError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.rate = extractor.rate
        self.window = extractor.window_frames(self.config.window_seconds)
        self.dim = extractor.dim(self.config)
        self.stats = stats
        self.running = RunningStats(self.dim)
        self.samples_received = 0
        self.finished = False
        self._encoder = extractor.stream(self.config)
        self._frames: list[np.ndarray] = []  # normalised encoder frames, in order
        self.frames_emitted = 0

    # ------------------------------------------------------------------ encoder frames
    def _add_frames(self, frames: Float[np.ndarray, "n dim"]) -> None:
        """Normalise the encoder frames a chunk completed and keep them."""
        if not len(frames):
            return
        if self.config.normalize:
            if self.stats is None:
                for row in frames:  # each frame normalised once, by the statistics up to and including itself
                    self.running.update(row[None])
                    mean, std = self.running.mean_std()
                    self._frames.append((row - mean) / (std + 1e-5))
                return
            mean, std = self.stats
            frames = (frames - mean) / (std + 1e-5)
        self._frames.extend(frames)

    # ------------------------------------------------------------------ video-frame windows
    def _video_frames_covered(self) -> int:
        return int(np.floor(self.samples_received / TARGET_SAMPLE_RATE * self.fps + 1e-6))

    def _window_indices(self, frame: int) -> np.ndarray:
        centre = int(np.round((frame + 0.5) / self.fps * self.rate))
        return centre - self.window // 2 + np.arange(self.window)

    def _emit(self) -> Float[np.ndarray, "n window dim"]:
        out = []
        covered = self._video_frames_covered()
        while self.frames_emitted < covered:
            idx = self._window_indices(self.frames_emitted)
            if not self.finished and idx[-1] >= len(self._frames):
                break  # needs audio that has not arrived yet
            idx = np.clip(idx, 0, len(self._frames) - 1)
            out.append(np.stack([self._frames[i] for i in idx]))
            self.frames_emitted += 1
        if not out:
            return np.zeros((0, self.window, self.dim), np.float32)
        return np.stack(out).astype(np.float32)

    def push(self, samples: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "n window dim"]:
        """Feed the next chunk; returns the windows of the video frames it completed (possibly none)."""
        if self.finished:
            raise AudioError("the stream has already finished; start a new StreamingFeatures")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        check_finite(samples, TARGET_SAMPLE_RATE, "the audio stream", self.samples_received)
        self.samples_received += len(samples)
        self._add_frames(self._encoder.push(samples))
        return self._emit()

    def finish(self) -> Float[np.ndarray, "n window dim"]:
        """The end of the stream: pad as the batch spectrogram does and emit the remaining frames' windows."""
        if self.finished:
            return np.zeros((0, self.window, self.dim), np.float32)
        self._add_frames(self._encoder.finish())
        self.finished = True
        if not self._frames:
            return np.zeros((0, self.window, self.dim), np.float32)
        return self._emit()

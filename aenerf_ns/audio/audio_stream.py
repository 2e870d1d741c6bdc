"""Per-video-frame audio features computed incrementally, while the audio is still arriving.

`compute_audio_features` sees a whole file; a live stream does not. `StreamingFeatures` keeps just enough of the
past to compute each log-mel frame once its 25 ms window has arrived, and emits a video frame's feature window
as soon as every encoder frame in it exists. Each chunk therefore costs only the frames and windows it completes,
and the numbers are the batch computation's: `finish()` pads the end as the batch spectrogram does, so a stream
fed a whole file in any chunking gives `compute_audio_features` of that file (with the same normalisation).

Normalisation cannot use the statistics of a clip that has not finished: the stream either uses fixed per-band
statistics given to it (e.g. those of the whole file, which reproduces the batch numbers) or, by default, the
running statistics of everything received so far, applied to each encoder frame once, when it is computed.

Only the weight-free ``logmel`` encoder streams: wav2vec2/HuBERT see the whole utterance at once.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_features import ENCODER_RATES, AudioFeatureConfig
from aenerf_ns.audio.audio_io import TARGET_SAMPLE_RATE, AudioError, check_finite

N_FFT = 400
"""Samples per log-mel analysis window (25 ms at 16 kHz), as `logmel_frames`."""
HOP = 160
"""Samples between log-mel frames (10 ms), as `logmel_frames`."""


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
        config: the training run's audio settings (encoder must be ``logmel``).
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
        if self.config.encoder != "logmel":
            raise AudioError(
                f"streaming needs the logmel audio encoder; this run uses {self.config.encoder!r}, which looks at "
                "the whole utterance at once (load the finished file with 'Load audio file' instead)"
            )
        if fps <= 0:
            raise AudioError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.rate = ENCODER_RATES["logmel"]
        self.window = self.config.window_frames()
        self.stats = stats
        self.running = RunningStats(self.config.n_mels)
        self.samples_received = 0
        self.finished = False
        self._pending = np.zeros(N_FFT // 2, np.float32)  # centred frames: the batch pads 200 zeros at the start
        self._frames: list[np.ndarray] = []  # normalised encoder frames, in order
        self.frames_emitted = 0
        self._mel_basis = None

    # ------------------------------------------------------------------ encoder frames
    def _mel(self, padded: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "n n_mels"]:
        import librosa

        if self._mel_basis is None:
            self._mel_basis = librosa.filters.mel(
                sr=TARGET_SAMPLE_RATE, n_fft=N_FFT, n_mels=self.config.n_mels, fmin=55, fmax=7600
            )
        spec = np.abs(librosa.stft(padded, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, center=False)) ** 2
        return np.log(self._mel_basis @ spec + 1e-6).T.astype(np.float32)

    def _encode_pending(self) -> None:
        """Compute every log-mel frame whose window is complete, keeping the samples the next frame needs."""
        if len(self._pending) < N_FFT:
            return
        count = 1 + (len(self._pending) - N_FFT) // HOP
        mel = self._mel(self._pending[: (count - 1) * HOP + N_FFT])
        self._pending = self._pending[count * HOP :]
        if self.config.normalize:
            if self.stats is None:
                for row in mel:  # each frame normalised once, by the statistics up to and including itself
                    self.running.update(row[None])
                    mean, std = self.running.mean_std()
                    self._frames.append((row - mean) / (std + 1e-5))
                return
            mean, std = self.stats
            mel = (mel - mean) / (std + 1e-5)
        self._frames.extend(mel)

    # ------------------------------------------------------------------ video-frame windows
    def _video_frames_covered(self) -> int:
        return int(np.floor(self.samples_received / TARGET_SAMPLE_RATE * self.fps + 1e-6))

    def _window_indices(self, frame: int) -> np.ndarray:
        centre = int(np.round((frame + 0.5) / self.fps * self.rate))
        return centre - self.window // 2 + np.arange(self.window)

    def _emit(self) -> Float[np.ndarray, "n window n_mels"]:
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
            return np.zeros((0, self.window, self.config.n_mels), np.float32)
        return np.stack(out).astype(np.float32)

    def push(self, samples: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "n window n_mels"]:
        """Feed the next chunk; returns the windows of the video frames it completed (possibly none)."""
        if self.finished:
            raise AudioError("the stream has already finished; start a new StreamingFeatures")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        check_finite(samples, TARGET_SAMPLE_RATE, "the audio stream", self.samples_received)
        self.samples_received += len(samples)
        self._pending = np.concatenate([self._pending, samples])
        self._encode_pending()
        return self._emit()

    def finish(self) -> Float[np.ndarray, "n window n_mels"]:
        """The end of the stream: pad as the batch spectrogram does and emit the remaining frames' windows."""
        if self.finished:
            return np.zeros((0, self.window, self.config.n_mels), np.float32)
        self._pending = np.concatenate([self._pending, np.zeros(N_FFT // 2, np.float32)])
        self._encode_pending()
        self.finished = True
        if not self._frames:
            return np.zeros((0, self.window, self.config.n_mels), np.float32)
        return self._emit()

"""The log-mel feature extractor: its FFT and band settings, stated once for the batch and the streaming paths.

`log_mel_frames` computes a whole clip's spectrogram; `LogMelStream` computes the same frames while the audio is
still arriving (`audio_stream.StreamingFeatures`). Both read `LOG_MEL`, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import TARGET_SAMPLE_RATE, AudioError, LoadedAudio
from aenerf_ns.audio.feature_registry import FeatureExtractor, register_extractor

if TYPE_CHECKING:
    from aenerf_ns.audio.audio_features import AudioFeatureConfig


@dataclass(frozen=True)
class LogMelSettings:
    """FFT and mel-band settings of the log-mel extractor (frame t is centred at t * hop_length / sample_rate)."""

    sample_rate: int = TARGET_SAMPLE_RATE
    """Sample rate the spectrogram is computed at (Hz)."""
    n_fft: int = 400
    """Samples per analysis window (25 ms at 16 kHz)."""
    hop_length: int = 160
    """Samples between frames (10 ms at 16 kHz: 100 frames/s)."""
    n_mels: int = 80
    """Default number of mel bands (`AudioFeatureConfig.n_mels` chooses per run)."""
    fmin: float = 55
    """Lowest band edge (Hz)."""
    fmax: float = 7600
    """Highest band edge (Hz)."""
    floor: float = 1e-6
    """Added to the mel power before the log, so silence stays finite."""

    @property
    def rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length


LOG_MEL = LogMelSettings()
"""The settings every log-mel feature in this package is computed with."""


def log_mel_frames(
    audio: LoadedAudio, n_mels: int = LOG_MEL.n_mels, settings: LogMelSettings = LOG_MEL
) -> Float[np.ndarray, "time n_mels"]:
    """A whole clip's log-mel spectrogram (librosa's centred frames: the clip is padded by half a window)."""
    import librosa

    if audio.sample_rate != settings.sample_rate:
        raise AudioError(f"logmel expects {settings.sample_rate} Hz audio, got {audio.sample_rate} Hz")
    mel = librosa.feature.melspectrogram(
        y=audio.samples,
        sr=settings.sample_rate,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.n_fft,
        n_mels=n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
    )
    return np.log(mel + settings.floor).T.astype(np.float32)


class LogMelStream:
    """Log-mel frames of a stream, each computed once its window has arrived; the frames `log_mel_frames` gives.

    Keeps only the samples the next frame needs. `finish` pads the end by half a window, as the batch
    spectrogram's centred frames do, so any chunking of a clip gives the whole clip's frames.
    """

    def __init__(self, n_mels: int = LOG_MEL.n_mels, settings: LogMelSettings = LOG_MEL) -> None:
        import librosa

        self.settings = settings
        self.dim = n_mels
        self._basis = librosa.filters.mel(
            sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=n_mels, fmin=settings.fmin, fmax=settings.fmax
        )
        self._pending = np.zeros(settings.n_fft // 2, np.float32)  # centred frames: pad half a window at the start

    def _frames(self) -> Float[np.ndarray, "n n_mels"]:
        import librosa

        s = self.settings
        if len(self._pending) < s.n_fft:
            return np.zeros((0, self.dim), np.float32)
        count = 1 + (len(self._pending) - s.n_fft) // s.hop_length
        padded = self._pending[: (count - 1) * s.hop_length + s.n_fft]
        self._pending = self._pending[count * s.hop_length :]
        spec = np.abs(librosa.stft(padded, n_fft=s.n_fft, hop_length=s.hop_length, win_length=s.n_fft, center=False))
        return np.log(self._basis @ spec**2 + s.floor).T.astype(np.float32)

    def push(self, samples: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "n n_mels"]:
        """Feed the next samples; returns the frames whose window they completed (possibly none)."""
        self._pending = np.concatenate([self._pending, samples])
        return self._frames()

    def finish(self) -> Float[np.ndarray, "n n_mels"]:
        """The end of the stream: the frames the end padding completes."""
        self._pending = np.concatenate([self._pending, np.zeros(self.settings.n_fft // 2, np.float32)])
        return self._frames()


def log_mel_features(audio: LoadedAudio, config: AudioFeatureConfig, model=None) -> Float[np.ndarray, "time n_mels"]:
    """The registry's loader: the clip's log-mel frames with the run's number of bands (`model` is unused)."""
    return log_mel_frames(audio, config.n_mels)


def log_mel_stream(config: AudioFeatureConfig) -> LogMelStream:
    """The registry's streaming function: a `LogMelStream` with the run's number of bands."""
    return LogMelStream(config.n_mels)


register_extractor(
    FeatureExtractor(
        "logmel",
        LOG_MEL.rate,
        log_mel_features,
        dim=lambda config: config.n_mels,
        stream=log_mel_stream,
        description="log-mel spectrogram, weight-free",
    )
)

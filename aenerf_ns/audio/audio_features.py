"""Per-video-frame audio features: a window of encoder frames centred on every video frame.

The encoder frames come from a feature extractor named by ``AudioFeatureConfig.encoder`` and looked up in
`feature_registry`. Built in:

- ``logmel`` (default): 80-band log-mel spectrogram at 100 frames/s; needs no weights (`log_mel`).
- ``wav2vec2`` and ``hubert``: hidden states of a transformers speech model at 50 frames/s. Weights are
  read from a local folder (``model_path``) or an existing Hugging Face cache, never downloaded here
  (`speech_models`).

For video frame ``i`` (time span ``[i/fps, (i+1)/fps)``) the feature is the ``(window, dim)`` block of
encoder frames centred on the frame's middle, clamped at the clip's ends. Results are cached next to the
dataset under a key made of the audio content and every setting that changes the numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import AudioError, LoadedAudio, check_not_silent, load_audio
from aenerf_ns.audio.feature_registry import get_extractor
from aenerf_ns.audio.log_mel import LOG_MEL
from aenerf_ns.utils.atomic_io import atomic_save_npy


@dataclass
class AudioFeatureConfig:
    """How audio becomes per-frame features."""

    encoder: str = "logmel"
    """Feature extractor, by its `feature_registry` name: logmel (no weights), wav2vec2 or hubert (local weights
    required), or any other registered one."""
    model_path: Path | None = None
    """Folder holding a transformers wav2vec2/HuBERT model (config.json + weights)."""
    model_name: str | None = None
    """Hugging Face id to look up in the local cache when model_path is not set."""
    window_seconds: float = 0.16
    """Length of the audio window centred on each video frame."""
    n_mels: int = LOG_MEL.n_mels
    """Mel bands of the logmel encoder."""
    normalize: bool = True
    """Standardise each feature channel over the clip (removes microphone and loudness differences)."""
    cache: bool = True
    """Cache computed features next to the dataset."""

    def window_frames(self) -> int:
        """Encoder frames per video-frame window."""
        return get_extractor(self.encoder).window_frames(self.window_seconds)


def frame_windows(
    frames: Float[np.ndarray, "time dim"], rate: float, fps: float, num_frames: int, window: int
) -> Float[np.ndarray, "num_frames window dim"]:
    """Gather a `window`-frame block of encoder frames centred on each video frame's mid-time."""
    centres = np.round((np.arange(num_frames) + 0.5) / fps * rate).astype(np.int64)
    idx = centres[:, None] - window // 2 + np.arange(window)[None, :]
    idx = np.clip(idx, 0, len(frames) - 1)
    return frames[idx]


def num_video_frames(audio: LoadedAudio, fps: float) -> int:
    """Whole video frames covered by the audio."""
    return int(np.floor(audio.duration_s * fps + 1e-6))


def _cache_key(audio_path: Path, config: AudioFeatureConfig, fps: float, num_frames: int) -> str:
    h = hashlib.sha256(Path(audio_path).read_bytes())
    settings = {
        "encoder": config.encoder,
        "model": str(config.model_path or config.model_name or get_extractor(config.encoder).default_model or ""),
        "window_seconds": config.window_seconds,
        "n_mels": config.n_mels,
        "normalize": config.normalize,
        "fps": fps,
        "num_frames": num_frames,
        "version": 1,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:20]


def compute_audio_features(
    audio_path: Path | str,
    fps: float,
    num_frames: int | None = None,
    config: AudioFeatureConfig | None = None,
    cache_dir: Path | None = None,
    model=None,
    audio: LoadedAudio | None = None,
) -> Float[np.ndarray, "num_frames window dim"]:
    """Per-video-frame audio feature windows for an audio file.

    Args:
        audio_path: any audio file `load_audio` reads.
        fps: video frame rate the features are aligned to.
        num_frames: frames of the video; the audio must cover them (within half a frame). None: as many
            whole frames as the audio covers.
        config: encoder settings.
        cache_dir: where to cache results (None: no caching).
        model: an already built model (wav2vec2/HuBERT) handed to the extractor instead of loading weights (not
            cached).
        audio: `audio_path` already decoded by `load_audio` (saves decoding it a second time).
    """
    config = config or AudioFeatureConfig()
    extractor = get_extractor(config.encoder)
    if fps <= 0:
        raise AudioError(f"fps must be positive, got {fps}")
    if audio is None:
        audio = load_audio(audio_path)
    if num_frames is None:
        num_frames = num_video_frames(audio, fps)
        if num_frames < 1:
            raise AudioError(f"{audio_path} is {audio.duration_s:.3f} s long: shorter than one frame at {fps} fps")
    elif audio.duration_s + 0.5 / fps < num_frames / fps:
        raise AudioError(
            f"audio {audio_path} is {audio.duration_s:.2f} s long but the video has {num_frames} frames "
            f"({num_frames / fps:.2f} s at {fps:g} fps): the audio must cover the whole video"
        )
    check_not_silent(audio)

    cache_path = None
    if cache_dir is not None and config.cache and model is None:
        cache_path = Path(cache_dir) / f"{config.encoder}-{_cache_key(Path(audio_path), config, fps, num_frames)}.npy"
        if cache_path.is_file():
            try:
                return np.load(cache_path)
            except (OSError, ValueError):
                cache_path.unlink(missing_ok=True)  # a damaged cache entry is recomputed

    frames = extractor.frames(audio, config, model)
    if frames.ndim != 2 or not len(frames):
        raise ValueError(
            f"audio feature extractor {extractor.name!r} returned frames of shape {frames.shape}; "
            "a loader must return (time, dim) with at least one frame"
        )
    if config.normalize and extractor.standardise:
        frames = (frames - frames.mean(0, keepdims=True)) / (frames.std(0, keepdims=True) + 1e-5)
    feats = frame_windows(frames, extractor.rate, fps, num_frames, extractor.window_frames(config.window_seconds))
    feats = feats.astype(np.float32)
    if cache_path is not None:
        atomic_save_npy(cache_path, feats)
    return feats

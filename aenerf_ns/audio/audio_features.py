"""Per-video-frame audio features: a window of encoder frames centred on every video frame.

Three encoders are offered:

- ``logmel`` (default): 80-band log-mel spectrogram at 100 frames/s; needs no weights.
- ``wav2vec2`` and ``hubert``: hidden states of a transformers speech model at 50 frames/s. Weights are
  read from a local folder (``model_path``) or an existing Hugging Face cache, never downloaded here.

For video frame ``i`` (time span ``[i/fps, (i+1)/fps)``) the feature is the ``(window, dim)`` block of
encoder frames centred on the frame's middle, clamped at the clip's ends. Results are cached next to the
dataset under a key made of the audio content and every setting that changes the numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import AudioError, LoadedAudio, check_not_silent, load_audio
from aenerf_ns.utils.atomic_io import atomic_save_npy

EncoderName = Literal["logmel", "wav2vec2", "hubert"]

DEFAULT_MODEL_NAMES = {"wav2vec2": "facebook/wav2vec2-base-960h", "hubert": "facebook/hubert-large-ls960-ft"}
"""Hugging Face ids looked up in the local cache when no model_path is given."""

ENCODER_RATES = {"logmel": 100.0, "wav2vec2": 50.0, "hubert": 50.0}
"""Encoder output frames per second."""


class MissingWeightsError(RuntimeError):
    """A pretrained speech model was asked for but its weights are not on this machine."""


@dataclass
class AudioFeatureConfig:
    """How audio becomes per-frame features."""

    encoder: EncoderName = "logmel"
    """Audio encoder: logmel (no weights), wav2vec2 or hubert (local weights required)."""
    model_path: Path | None = None
    """Folder holding a transformers wav2vec2/HuBERT model (config.json + weights)."""
    model_name: str | None = None
    """Hugging Face id to look up in the local cache when model_path is not set."""
    window_seconds: float = 0.16
    """Length of the audio window centred on each video frame."""
    n_mels: int = 80
    """Mel bands of the logmel encoder."""
    normalize: bool = True
    """Standardise each feature channel over the clip (removes microphone and loudness differences)."""
    cache: bool = True
    """Cache computed features next to the dataset."""

    def window_frames(self) -> int:
        """Encoder frames per video-frame window."""
        return max(1, int(round(self.window_seconds * ENCODER_RATES[self.encoder])))


def logmel_frames(audio: LoadedAudio, n_mels: int = 80) -> Float[np.ndarray, "time n_mels"]:
    """Log-mel spectrogram, 25 ms windows every 10 ms (frame t is centred at t/100 s)."""
    import librosa

    if audio.sample_rate != 16000:
        raise AudioError(f"logmel expects 16 kHz audio, got {audio.sample_rate} Hz")
    mel = librosa.feature.melspectrogram(
        y=audio.samples, sr=16000, n_fft=400, hop_length=160, win_length=400, n_mels=n_mels, fmin=55, fmax=7600
    )
    return np.log(mel + 1e-6).T.astype(np.float32)


def load_speech_model(config: AudioFeatureConfig):
    """Load a wav2vec2/HuBERT model from local files only, or explain how to provide the weights."""
    from transformers import HubertModel, Wav2Vec2Model

    cls = {"wav2vec2": Wav2Vec2Model, "hubert": HubertModel}[config.encoder]
    source = str(config.model_path or config.model_name or DEFAULT_MODEL_NAMES[config.encoder])
    if config.model_path is not None and not Path(config.model_path).exists():
        raise MissingWeightsError(f"{config.encoder} model folder {config.model_path} does not exist")
    try:
        model = cls.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(
            f"{config.encoder} weights '{source}' are not available on this machine ({type(exc).__name__}). "
            "Nothing is downloaded at run time. On a machine with internet run "
            f"`huggingface-cli download {DEFAULT_MODEL_NAMES[config.encoder]} --local-dir <DIR>`, copy <DIR> here and "
            "pass it as model_path (e.g. --pipeline.datamanager.dataparser.audio.model-path <DIR>), "
            "or use the weight-free default encoder 'logmel'."
        ) from None
    return model.eval()


def speech_model_frames(audio: LoadedAudio, model, chunk_seconds: float = 20.0) -> Float[np.ndarray, "time dim"]:
    """Last hidden states of a wav2vec2/HuBERT model at 50 frames/s, run in chunks to bound memory."""
    import torch

    x = audio.samples.astype(np.float32)
    x = (x - x.mean()) / (x.std() + 1e-7)
    chunk = int(chunk_seconds * audio.sample_rate)
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            piece = x[start : start + chunk]
            if len(piece) < 400:  # shorter than the model's receptive field: pad with silence
                piece = np.pad(piece, (0, 400 - len(piece)))
            hidden = model(torch.from_numpy(piece)[None]).last_hidden_state[0]
            outs.append(hidden.float().cpu().numpy())
    return np.concatenate(outs, 0)


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
        "model": str(config.model_path or config.model_name or DEFAULT_MODEL_NAMES.get(config.encoder, "")),
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
        model: an already built wav2vec2/HuBERT model to use instead of loading weights (not cached).
        audio: `audio_path` already decoded by `load_audio` (saves decoding it a second time).
    """
    config = config or AudioFeatureConfig()
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

    if config.encoder == "logmel":
        frames = logmel_frames(audio, config.n_mels)
    elif config.encoder in ("wav2vec2", "hubert"):
        frames = speech_model_frames(audio, model if model is not None else load_speech_model(config))
    else:
        raise ValueError(f"unknown audio encoder {config.encoder!r}; choose logmel, wav2vec2 or hubert")
    if config.normalize:
        frames = (frames - frames.mean(0, keepdims=True)) / (frames.std(0, keepdims=True) + 1e-5)
    feats = frame_windows(frames, ENCODER_RATES[config.encoder], fps, num_frames, config.window_frames())
    feats = feats.astype(np.float32)
    if cache_path is not None:
        atomic_save_npy(cache_path, feats)
    return feats

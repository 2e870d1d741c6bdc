"""The wav2vec2 and HuBERT feature extractors: last hidden states of a transformers speech model at 50 frames/s.

Weights are read from a local folder (``model_path``) or an existing Hugging Face cache, never downloaded here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import LoadedAudio
from aenerf_ns.audio.feature_registry import FeatureExtractor, register_extractor

if TYPE_CHECKING:
    from aenerf_ns.audio.audio_features import AudioFeatureConfig

SPEECH_MODEL_RATE = 50.0
"""Hidden-state frames per second of wav2vec2 and HuBERT (a 320-sample stride at 16 kHz)."""

RECEPTIVE_FIELD_SAMPLES = 400
"""Samples the speech models' convolutional front end needs for one frame; shorter chunks are padded."""

DEFAULT_MODEL_NAMES = {"wav2vec2": "facebook/wav2vec2-base-960h", "hubert": "facebook/hubert-large-ls960-ft"}
"""Hugging Face ids looked up in the local cache when no model_path is given."""


class MissingWeightsError(RuntimeError):
    """A pretrained speech model was asked for but its weights are not on this machine."""


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
            if len(piece) < RECEPTIVE_FIELD_SAMPLES:  # shorter than the model's receptive field: pad with silence
                piece = np.pad(piece, (0, RECEPTIVE_FIELD_SAMPLES - len(piece)))
            hidden = model(torch.from_numpy(piece)[None]).last_hidden_state[0]
            outs.append(hidden.float().cpu().numpy())
    return np.concatenate(outs, 0)


def speech_features(audio: LoadedAudio, config: AudioFeatureConfig, model=None) -> Float[np.ndarray, "time dim"]:
    """The registry's loader: `model` if given (an already built model), else the weights `config` names."""
    return speech_model_frames(audio, model if model is not None else load_speech_model(config))


for _name, _model in DEFAULT_MODEL_NAMES.items():
    register_extractor(
        FeatureExtractor(
            _name,
            SPEECH_MODEL_RATE,
            speech_features,
            default_model=_model,
            description=f"{_name} hidden states, local weights",
        )
    )

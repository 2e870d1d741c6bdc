"""The audio feature extractors a run can name in `AudioFeatureConfig.encoder`, by name.

An extractor turns a clip's waveform into encoder frames at a fixed rate; `audio_features` cuts those frames into
one window per video frame, and `audio_stream` does the same while the audio arrives, for the extractors that can
stream. Adding one is a module that ends by registering it (`register_extractor`) plus its line in
`EXTRACTOR_MODULES`; see docs/audio_features.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import LoadedAudio

if TYPE_CHECKING:
    from aenerf_ns.audio.audio_features import AudioFeatureConfig


class FrameStream(Protocol):
    """Encoder frames of a stream, computed as the samples arrive (`log_mel.LogMelStream` is one)."""

    def push(self, samples: Float[np.ndarray, "samples"]) -> Float[np.ndarray, "n dim"]:
        """The frames the new samples complete."""
        ...

    def finish(self) -> Float[np.ndarray, "n dim"]:
        """The frames the end of the stream completes."""
        ...


@dataclass(frozen=True)
class FeatureExtractor:
    """One way of turning audio into encoder frames, and what the batch and streaming paths need to know of it."""

    name: str
    """What `AudioFeatureConfig.encoder` calls it (also the prefix of its cache files)."""
    rate: float
    """Encoder frames per second of audio (frame t is centred at t / rate seconds)."""
    frames: Callable[[LoadedAudio, AudioFeatureConfig, Any], Float[np.ndarray, "time dim"]]
    """Loader: (16 kHz mono audio, the run's config, an already built model or None) -> (time, dim) frames."""
    dim: Callable[[AudioFeatureConfig], int] | None = None
    """Feature size for a config (e.g. its n_mels); None when only the loaded weights tell."""
    stream: Callable[[AudioFeatureConfig], FrameStream] | None = None
    """Streaming function: a `FrameStream` for a config; None when the extractor needs the whole clip at once."""
    default_model: str | None = None
    """Hugging Face id of the weights used when the config names none (extractors with weights; cache key)."""
    description: str = ""
    """One line for error messages and docs."""
    standardise: bool = True
    """Whether `AudioFeatureConfig.normalize` standardises its channels over each clip; False for features that are
    already comparable between clips (e.g. one-hot phones, where a phone a clip lacks would become noise)."""

    def window_frames(self, window_seconds: float) -> int:
        """Encoder frames in a window of `window_seconds` (at least one)."""
        return max(1, int(round(window_seconds * self.rate)))


EXTRACTOR_MODULES = (
    "aenerf_ns.audio.log_mel",
    "aenerf_ns.audio.speech_models",
    "aenerf_ns.audio.phonetic",
)
"""Modules that register this package's extractors, imported at the first lookup (a new extractor: one more line)."""

EXTRACTORS: dict[str, FeatureExtractor] = {}
"""Every registered extractor by name, in registration order."""


def _import_extractor_modules() -> None:
    """Import `EXTRACTOR_MODULES` (once; they import this module, so not at its import)."""
    for module in EXTRACTOR_MODULES:
        importlib.import_module(module)


def register_extractor(extractor: FeatureExtractor) -> FeatureExtractor:
    """Make `extractor` available to `AudioFeatureConfig.encoder`; a name can be registered once."""
    if extractor.name in EXTRACTORS:
        raise ValueError(f"an audio feature extractor named {extractor.name!r} is already registered")
    if extractor.rate <= 0:
        raise ValueError(f"audio feature extractor {extractor.name!r}: rate must be positive, got {extractor.rate}")
    if extractor.stream is not None and extractor.dim is None:
        raise ValueError(f"audio feature extractor {extractor.name!r} streams, so it must state its dim")
    EXTRACTORS[extractor.name] = extractor
    return extractor


def extractor_names() -> list[str]:
    """Names of every registered extractor: this package's in `EXTRACTOR_MODULES` order (whichever module was
    imported first), then any others in registration order."""
    _import_extractor_modules()
    order = {module: i for i, module in enumerate(EXTRACTOR_MODULES)}
    return sorted(EXTRACTORS, key=lambda name: order.get(EXTRACTORS[name].frames.__module__, len(order)))


def streaming_names() -> list[str]:
    """Names of the extractors that can stream (live viewer audio)."""
    return [name for name in extractor_names() if EXTRACTORS[name].stream is not None]


def get_extractor(name: str) -> FeatureExtractor:
    """The extractor registered as `name`; a ValueError naming the registered ones otherwise."""
    _import_extractor_modules()
    if name not in EXTRACTORS:
        raise ValueError(
            f"unknown audio encoder {name!r}; registered feature extractors: {', '.join(extractor_names())} "
            "(see docs/audio_features.md to add one)"
        )
    return EXTRACTORS[name]

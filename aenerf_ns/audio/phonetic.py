"""The phonetic feature extractor: which speech sound is being made every 10 ms, plus how loud, from any voice.

A spectrogram carries the speaker's voice (pitch, timbre, microphone) as much as what is said, so an audio code
learned from a few seconds of one person's spectrogram follows that voice and drifts when another person speaks.
The mouth follows the speech sounds, not the voice. This extractor runs an offline phone recogniser
(pocketsphinx, whose wheel ships its own English acoustic model and phone language model, so nothing is
downloaded) and gives each 10 ms frame a one-hot vector over the 39 ARPAbet phones and silence, beside the
frame's loudness standardised over the clip. Both mean the same for any speaker.

The features are already comparable between clips, so the dataset's per-clip standardisation is skipped for them
(`FeatureExtractor.standardise`). They need the whole utterance (the recogniser searches over it), so they do not
stream: the live viewer loads a finished file for runs trained on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_io import TARGET_SAMPLE_RATE, AudioError, LoadedAudio
from aenerf_ns.audio.feature_registry import FeatureExtractor, register_extractor

if TYPE_CHECKING:
    from aenerf_ns.audio.audio_features import AudioFeatureConfig

PHONES = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
"""The phone inventory of the recogniser's English model; anything else it reports (noise, breath) counts as SIL."""

PHONE_RATE = 100.0
"""Recogniser frames per second (a 10 ms hop)."""

HOP_SAMPLES = int(TARGET_SAMPLE_RATE / PHONE_RATE)
"""Samples between frames at the working sample rate."""

LOUDNESS_FLOOR = 1e-3
"""Power added before the log, relative to the clip's mean power (30 dB below it): pauses read alike whatever
their noise, and a louder or quieter recording of the same speech gives the same loudness track."""

FEATURE_DIM = len(PHONES) + 1
"""One-hot phone plus the loudness channel."""


class MissingRecogniserError(RuntimeError):
    """The phonetic features were asked for but pocketsphinx is not installed."""


def recognise_phones(audio: LoadedAudio) -> list[tuple[str, int, int]]:
    """(phone, first frame, last frame) segments of the clip, frames at `PHONE_RATE`, from pocketsphinx's
    phone-loop decoder with its bundled English model."""
    if audio.sample_rate != TARGET_SAMPLE_RATE:
        raise AudioError(f"phone recognition expects {TARGET_SAMPLE_RATE} Hz audio, got {audio.sample_rate} Hz")
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError:
        raise MissingRecogniserError(
            "the 'phones' audio features need pocketsphinx (its wheel carries the English phone model): "
            "pip install 'aenerf_ns[phones]' (or pip install pocketsphinx), or use the default encoder 'logmel'"
        ) from None
    model = get_model_path()
    decoder = Decoder(
        hmm=f"{model}/en-us/en-us",
        allphone=f"{model}/en-us/en-us-phone.lm.bin",
        lw=2.0,
        beam=1e-20,
        pbeam=1e-20,
        samprate=TARGET_SAMPLE_RATE,
        loglevel="FATAL",
    )
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    return [(segment.word, segment.start_frame, segment.end_frame) for segment in decoder.seg()]


def phone_track(segments: list[tuple[str, int, int]], num_frames: int) -> Float[np.ndarray, "time phones"]:
    """One-hot phone per frame from recogniser segments; frames no segment covers are silence.

    The recogniser's frame k spans 10k..10k+25 ms, so its centre is about one hop later than this package's frame k
    (centred at 10k ms, as the log-mel frames are): segments are moved one frame later."""
    index = {phone: i for i, phone in enumerate(PHONES)}
    ids = np.zeros(num_frames, dtype=np.int64)
    for phone, first, last in segments:
        ids[max(first + 1, 0) : max(min(last + 2, num_frames), 0)] = index.get(phone, 0)
    return np.eye(len(PHONES), dtype=np.float32)[ids]


def loudness_track(samples: Float[np.ndarray, "samples"], num_frames: int) -> Float[np.ndarray, "time"]:
    """Log power of a 25 ms window centred on each frame, standardised over the clip (so voice level and
    microphone gain cancel)."""
    window = 2 * HOP_SAMPLES + HOP_SAMPLES // 2
    padded = np.pad(samples.astype(np.float64), window // 2)
    starts = np.arange(num_frames) * HOP_SAMPLES
    power = np.array([np.mean(padded[s : s + window] ** 2) for s in starts])
    level = np.log(power + LOUDNESS_FLOOR * power.mean() + 1e-12)
    return ((level - level.mean()) / (level.std() + 1e-5)).astype(np.float32)


def phonetic_frames(audio: LoadedAudio, config: AudioFeatureConfig, model=None) -> Float[np.ndarray, "time dim"]:
    """The registry's loader: one-hot phones and standardised loudness at 100 frames/s (`model` is unused)."""
    num_frames = 1 + len(audio.samples) // HOP_SAMPLES
    phones = phone_track(recognise_phones(audio), num_frames)
    return np.concatenate([phones, loudness_track(audio.samples, num_frames)[:, None]], axis=1)


register_extractor(
    FeatureExtractor(
        "phones",
        PHONE_RATE,
        phonetic_frames,
        dim=lambda config: FEATURE_DIM,
        standardise=False,
        description="recognised phones and loudness (pocketsphinx's bundled English model), speaker-independent",
    )
)

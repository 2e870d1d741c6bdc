"""A small formant speech synthesizer that also returns how far the mouth is open at every sample.

Real talking-head footage cannot ship with the project, so the synthetic sample needs speech whose sound
predicts the mouth: open vowels ("a") sound different from closed ones ("i", "u") and from lip closures
("m", "p"). The synthesizer is a source-filter model (a glottal pulse train through formant resonators,
noise for fricatives and bursts) written in numpy/scipy, so it needs no system packages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy.signal import butter, lfilter


@dataclass(frozen=True)
class Phone:
    """One sound class of the synthesizer."""

    name: str
    """Symbol, for debugging and plots."""
    kind: str
    """One of vowel, nasal, fricative, plosive."""
    formants: tuple[float, ...] = ()
    """Formant frequencies in Hz (voiced sounds) or the noise band (fricatives)."""
    opening: float = 0.0
    """Mouth opening in [0, 1] while the phone is held."""


VOWELS: tuple[Phone, ...] = (
    Phone("a", "vowel", (730.0, 1090.0, 2440.0), 1.0),
    Phone("o", "vowel", (570.0, 840.0, 2410.0), 0.7),
    Phone("e", "vowel", (530.0, 1840.0, 2480.0), 0.55),
    Phone("u", "vowel", (300.0, 870.0, 2240.0), 0.25),
    Phone("i", "vowel", (270.0, 2290.0, 3010.0), 0.15),
)
CONSONANTS: tuple[Phone, ...] = (
    Phone("m", "nasal", (250.0, 1200.0, 2200.0), 0.0),
    Phone("n", "nasal", (250.0, 1700.0, 2500.0), 0.12),
    Phone("s", "fricative", (4000.0, 7000.0), 0.1),
    Phone("sh", "fricative", (2000.0, 5000.0), 0.2),
    Phone("p", "plosive", (500.0, 4000.0), 0.0),
    Phone("t", "plosive", (2500.0, 6000.0), 0.12),
)
_BANDWIDTHS = (80.0, 100.0, 140.0)


@dataclass
class SpeechTrack:
    """Synthesized speech and the mouth opening that produced it."""

    audio: Float[np.ndarray, "samples"]
    """Mono waveform in [-1, 1]."""
    opening: Float[np.ndarray, "samples"]
    """Mouth opening in [0, 1] at every sample."""
    sample_rate: int
    """Samples per second."""


def _resonator(signal: np.ndarray, freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """Second-order resonator with unit gain at DC-normalised peak."""
    r = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2.0 * np.pi * freq / sample_rate
    a = [1.0, -2.0 * r * np.cos(theta), r * r]
    b = [1.0 - r]
    return lfilter(b, a, signal)


def _bandpass_noise(rng: np.random.Generator, n: int, low: float, high: float, sample_rate: int) -> np.ndarray:
    nyquist = sample_rate / 2.0
    b, a = butter(2, [low / nyquist, min(high / nyquist, 0.99)], btype="band")
    return lfilter(b, a, rng.standard_normal(n))


def _envelope(n: int, ramp: int) -> np.ndarray:
    env = np.ones(n)
    ramp = max(1, min(ramp, n // 2))
    env[:ramp] = np.linspace(0.0, 1.0, ramp)
    env[n - ramp :] = np.linspace(1.0, 0.0, ramp)
    return env


def synthesize_speech(duration_s: float, sample_rate: int = 16000, f0: float = 120.0, seed: int = 0) -> SpeechTrack:
    """Synthesize `duration_s` seconds of speech-like audio with its mouth-opening track.

    The utterance is a random sequence of words (one to three consonant-vowel syllables) separated by
    pauses; pitch follows a slow intonation contour. Mouth opening follows the phone targets, smoothed
    over about 60 ms the way articulators move between sounds.
    """
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    rng = np.random.default_rng(seed)
    n_total = int(round(duration_s * sample_rate))
    audio = np.zeros(n_total)
    target = np.zeros(n_total)

    t = np.arange(n_total) / sample_rate
    pitch = f0 * (1.0 + 0.08 * np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 6.28)) + 0.03 * np.sin(2 * np.pi * 2.3 * t))
    phase = np.cumsum(pitch / sample_rate)
    source = 2.0 * (phase % 1.0) - 1.0  # sawtooth: harmonics falling as 1/n like a glottal source
    source = lfilter([1.0], [1.0, -0.6], source) + 0.02 * rng.standard_normal(n_total)

    pos = int(rng.uniform(0.1, 0.3) * sample_rate)
    while pos < n_total:
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.8:
                cons = CONSONANTS[int(rng.integers(len(CONSONANTS)))]
                length = int(rng.uniform(0.05, 0.09) * sample_rate)
                pos = _place_consonant(cons, pos, length, audio, target, source, rng, sample_rate)
            vowel = VOWELS[int(rng.integers(len(VOWELS)))]
            length = int(rng.uniform(0.12, 0.26) * sample_rate)
            end = min(pos + length, n_total)
            if end <= pos:
                break
            seg = source[pos:end]
            voiced = sum(_resonator(seg, f, bw, sample_rate) for f, bw in zip(vowel.formants, _BANDWIDTHS))
            loudness = 0.5 + 0.5 * vowel.opening
            audio[pos:end] += loudness * voiced * _envelope(end - pos, int(0.015 * sample_rate))
            target[pos:end] = vowel.opening * rng.uniform(0.85, 1.0)
            pos = end
        pause = rng.uniform(0.4, 0.7) if rng.random() < 0.15 else rng.uniform(0.08, 0.3)
        pos += int(pause * sample_rate)

    win = np.hanning(int(0.06 * sample_rate))
    opening = np.convolve(target, win / win.sum(), mode="same")
    peak = np.max(np.abs(audio))
    if peak > 0:
        audio = 0.8 * audio / peak
    return SpeechTrack(audio.astype(np.float32), np.clip(opening, 0.0, 1.0).astype(np.float32), sample_rate)


def _place_consonant(
    cons: Phone,
    pos: int,
    length: int,
    audio: np.ndarray,
    target: np.ndarray,
    source: np.ndarray,
    rng: np.random.Generator,
    sample_rate: int,
) -> int:
    end = min(pos + length, len(audio))
    n = end - pos
    if n <= 0:
        return pos
    if cons.kind == "nasal":
        seg = source[pos:end]
        sound = sum(_resonator(seg, f, bw, sample_rate) for f, bw in zip(cons.formants, _BANDWIDTHS))
        audio[pos:end] += 0.35 * sound * _envelope(n, int(0.01 * sample_rate))
    elif cons.kind == "fricative":
        sound = _bandpass_noise(rng, n, cons.formants[0], cons.formants[1], sample_rate)
        audio[pos:end] += 0.25 * sound / (np.std(sound) + 1e-8) * 0.3 * _envelope(n, int(0.01 * sample_rate))
    elif cons.kind == "plosive":
        burst = min(n, int(0.02 * sample_rate))
        start = end - burst
        sound = _bandpass_noise(rng, burst, cons.formants[0], cons.formants[1], sample_rate)
        audio[start:end] += 0.3 * sound / (np.std(sound) + 1e-8) * 0.3 * _envelope(burst, burst // 4)
    target[pos:end] = cons.opening
    return end


def opening_per_frame(
    opening: Float[np.ndarray, "samples"], sample_rate: int, fps: float, num_frames: int
) -> Float[np.ndarray, "frames"]:
    """Mean mouth opening over each video frame's time span."""
    out = np.zeros(num_frames, dtype=np.float32)
    for i in range(num_frames):
        a = int(round(i * sample_rate / fps))
        b = max(a + 1, int(round((i + 1) * sample_rate / fps)))
        out[i] = float(opening[a:b].mean()) if a < len(opening) else 0.0
    return out

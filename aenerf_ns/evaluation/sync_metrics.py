"""Weight-free lip-sync measures: how well a mouth-opening signal follows the speech, and at what delay.

No pretrained network is involved (SyncNet needs downloaded weights): the audio side is the speech
envelope per video frame, the video side the mouth-interior area of each frame's parsing, and their
agreement is the Pearson correlation at each delay within a window.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float

from aenerf_ns.audio.audio_io import LoadedAudio


def speech_envelope(
    audio: LoadedAudio, frame_times_s: Float[np.ndarray, "n"], fps: float, floor_db: float = 40.0
) -> Float[np.ndarray, "n"]:
    """Speech-band energy (dB) in a one-frame window around each frame time, floored `floor_db` below its peak."""
    import scipy.signal

    sos = scipy.signal.butter(4, (250.0, 4000.0), btype="bandpass", fs=audio.sample_rate, output="sos")
    band = scipy.signal.sosfiltfilt(sos, audio.samples.astype(np.float64))
    half = max(1, int(round(0.5 * audio.sample_rate / fps)))
    centres = np.round(np.asarray(frame_times_s) * audio.sample_rate).astype(np.int64)
    power = np.concatenate([[0.0], np.cumsum(band**2)])
    lo = np.clip(centres - half, 0, len(band))
    hi = np.clip(centres + half, 0, len(band))
    mean_power = (power[hi] - power[lo]) / np.maximum(hi - lo, 1)
    level = 10.0 * np.log10(mean_power + 1e-12)
    return np.maximum(level, level.max() - floor_db)  # pauses count as quiet, not as -100 dB outliers


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def lagged_correlations(
    mouth: Float[np.ndarray, "n"], envelope: Float[np.ndarray, "n"], max_offset: int
) -> dict[int, float]:
    """Correlation of mouth[t] with envelope[t - k] for every offset k in [-max_offset, max_offset].

    A positive k means the mouth moves k frames after the sound (video lags audio).
    """
    mouth, envelope = np.asarray(mouth, float), np.asarray(envelope, float)
    n = len(mouth)
    out = {}
    for k in range(-max_offset, max_offset + 1):
        if k >= 0:
            a, b = mouth[k:], envelope[: n - k]
        else:
            a, b = mouth[: n + k], envelope[-k:]
        out[k] = _corr(a, b)
    return out


def sync_report(mouth: Float[np.ndarray, "n"], envelope: Float[np.ndarray, "n"], max_offset: int = 5) -> dict:
    """Agreement of a mouth-opening track with the speech: correlation at offset 0, best offset and its value."""
    corrs = lagged_correlations(mouth, envelope, max_offset)
    finite = {k: v for k, v in corrs.items() if np.isfinite(v)}
    if not finite:
        return {"correlation": float("nan"), "best_offset_frames": None, "best_correlation": float("nan")}
    best = max(finite, key=lambda k: (finite[k], -abs(k)))
    return {"correlation": corrs[0], "best_offset_frames": int(best), "best_correlation": finite[best]}


def mouth_extent(mask: Bool[np.ndarray, "h w"]) -> int:
    """Vertical opening of a mouth-interior mask: rows from its top to its bottom pixel (0 if empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


def mask_iou(a: Bool[np.ndarray, "h w"], b: Bool[np.ndarray, "h w"]) -> float | None:
    """Intersection over union of two masks; None when both are empty."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return None
    return float(np.logical_and(a, b).sum() / union)

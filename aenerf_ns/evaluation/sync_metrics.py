"""Weight-free lip-sync measures: how well a mouth-opening signal follows the speech, and at what delay.

No pretrained network is involved (SyncNet needs downloaded weights). The measure (`lip_sync_report`):

- audio side: the loudness (RMS amplitude) of the 500-2500 Hz band, where the first two formants of vowels
  lie, in a one-frame window around each frame time (`speech_amplitude`): an open mouth makes a loud vowel;
- video side: the mouth opening of each frame (inner-lip gap over the eye-corner distance, from the face
  mesh; see `mouth_landmarks`);
- both tracks are band-passed to 1-8 Hz (`syllable_band`), the rate at which syllables open and close the
  mouth, which removes slow drift (head pose, loudness of whole phrases) and frame-to-frame jitter;
- the score is their Pearson correlation at offset 0, and at every offset within +-max_offset frames.

`sync_validation` checks that the measure can tell good sync from bad on a given clip: the clip's own
audio at offset 0 has to beat the same video shifted by a few frames, and unrelated audio (taken from
elsewhere in the audio track) has to score near zero. On a 71 s news-anchor recording the ground truth
scores 0.52 at offset 0 (its peak), between -0.24 and -0.12 shifted by 3-5 frames, and -0.005 +- 0.039
with unrelated audio; every 10 s segment passes (docs/evaluation.md).

`speech_envelope` (floored dB energy of the 250-4000 Hz band) is for plots only: correlated raw with the
mouth opening it follows slow loudness changes as much as the syllables, and on real speech a shift of a
few frames can score almost as well as offset 0. `sync_report` is the plain lagged-correlation summary
the measure is built on.
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Bool, Float

from aenerf_ns.audio.audio_io import LoadedAudio

SPEECH_BAND_HZ = (500.0, 2500.0)
"""Audio band whose loudness follows the mouth opening: the first two formants of vowels."""
SYLLABLE_BAND_HZ = (1.0, 8.0)
"""Modulation band both tracks are filtered to before correlating: the rate of syllables."""
MAX_BRIDGED_GAP = 5
"""Runs of up to this many frames without a mouth opening (no face) are interpolated; longer runs are
bridged for filtering only and left out of the correlations."""
SHUFFLE_MIN_GAP_S = 1.0
"""Unrelated audio for `sync_validation` is taken at least this far (seconds, circularly) from the clip's own."""
SHIFT_MARGIN = 0.1
"""`sync_validation` passes when offset 0 beats every shifted video by at least this much ..."""
SHUFFLE_Z = 3.0
"""... and lies at least this many standard deviations above the mean score of unrelated audio."""


def speech_envelope(
    audio: LoadedAudio, frame_times_s: Float[np.ndarray, "n"], fps: float, floor_db: float = 40.0
) -> Float[np.ndarray, "n"]:
    """Speech-band energy (dB) in a one-frame window around each frame time, floored `floor_db` below its peak.

    For plots: the sync measure uses `speech_amplitude` (see the module docstring).
    """
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


class _BandAmplitude:
    """RMS amplitude of one audio band in a window around any time, after filtering the audio once."""

    def __init__(self, audio: LoadedAudio, fps: float, band_hz: tuple[float, float] = SPEECH_BAND_HZ):
        import scipy.signal

        rate = audio.sample_rate
        low, high = band_hz[0], min(band_hz[1], 0.45 * rate)
        sos = scipy.signal.butter(4, (low, high), btype="bandpass", fs=rate, output="sos")
        samples = audio.samples.astype(np.float64)
        band = scipy.signal.sosfiltfilt(sos, samples) if len(samples) > 60 else np.zeros_like(samples)
        self.power = np.concatenate([[0.0], np.cumsum(band**2)])
        self.rate, self.half = rate, max(1, int(round(0.5 * rate / fps)))
        self.duration_s = len(samples) / rate

    def __call__(self, times_s: Float[np.ndarray, "n"]) -> Float[np.ndarray, "n"]:
        centres = np.round(np.asarray(times_s, np.float64) * self.rate).astype(np.int64)
        n = len(self.power) - 1
        lo, hi = np.clip(centres - self.half, 0, n), np.clip(centres + self.half, 0, n)
        mean_power = (self.power[hi] - self.power[lo]) / np.maximum(hi - lo, 1)
        return np.where(hi > lo, np.sqrt(np.maximum(mean_power, 0.0)), np.nan)  # NaN: outside the audio


def speech_amplitude(
    audio: LoadedAudio,
    frame_times_s: Float[np.ndarray, "n"],
    fps: float,
    band_hz: tuple[float, float] = SPEECH_BAND_HZ,
) -> Float[np.ndarray, "n"]:
    """RMS amplitude of the `band_hz` band of `audio` in a one-frame window around each frame time (the audio
    side of the sync measure); NaN for frames outside the audio."""
    import dataclasses

    times = np.asarray(frame_times_s, np.float64)
    if len(times) == 0:
        return np.zeros(0)
    # filter only the stretch the frames need (plus a margin for the filter's start-up)
    start = max(0, int((np.nanmin(times) - 1.0) * audio.sample_rate))
    stop = max(start, int((np.nanmax(times) + 1.0) * audio.sample_rate) + 1)
    part = dataclasses.replace(audio, samples=audio.samples[start:stop])
    return _BandAmplitude(part, fps, band_hz)(times - start / audio.sample_rate)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def syllable_band(
    track: Float[np.ndarray, "n"],
    fps: float,
    band_hz: tuple[float, float] = SYLLABLE_BAND_HZ,
    max_gap: int = MAX_BRIDGED_GAP,
) -> Float[np.ndarray, "n"]:
    """`track` band-passed to `band_hz` (zero-phase, so nothing is delayed).

    Missing values (NaN) are interpolated for filtering; runs longer than `max_gap` frames, and missing
    frames at either end, stay NaN in the result.
    """
    import scipy.signal

    track = np.asarray(track, np.float64)
    n = len(track)
    finite = np.isfinite(track)
    if finite.sum() < 2:
        return np.full(n, np.nan)
    known = np.flatnonzero(finite)
    bridged = np.interp(np.arange(n), known, track[known])
    keep = finite.copy()
    for a, b in _runs(~finite):
        keep[a:b] = a > 0 and b < n and b - a <= max_gap
    high = min(band_hz[1], 0.45 * fps)
    if band_hz[0] < high:
        sos = scipy.signal.butter(2, (band_hz[0], high), btype="bandpass", fs=fps, output="sos")
    else:  # a frame rate too low for the band's upper edge: keep everything above its lower edge
        sos = scipy.signal.butter(2, band_hz[0], btype="highpass", fs=fps, output="sos")
    filtered = scipy.signal.sosfiltfilt(sos, bridged, padlen=min(3 * (2 * len(sos) + 1), n - 1))
    return np.where(keep, filtered, np.nan)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def lagged_correlations(
    mouth: Float[np.ndarray, "n"], envelope: Float[np.ndarray, "n"], max_offset: int
) -> dict[int, float]:
    """Correlation of mouth[t] with envelope[t - k] for every offset k in [-max_offset, max_offset], over the
    pairs where both are finite.

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
    """Correlation of two tracks at offset 0, and the best offset with its value (no filtering: for the sync
    measure itself see `lip_sync_report`)."""
    corrs = lagged_correlations(mouth, envelope, max_offset)
    finite = {k: v for k, v in corrs.items() if np.isfinite(v)}
    if not finite:
        return {"correlation": float("nan"), "best_offset_frames": None, "best_correlation": float("nan")}
    best = max(finite, key=lambda k: (finite[k], -abs(k)))
    return {"correlation": corrs[0], "best_offset_frames": int(best), "best_correlation": finite[best]}


def min_sync_frames(fps: float, max_offset: int = 5) -> int:
    """Fewest usable frames `lip_sync_report` scores: one period of the slowest syllable-band modulation, and
    more than twice the offset search."""
    return max(2 * max_offset + 3, int(math.ceil(fps / SYLLABLE_BAND_HZ[0])))


def _empty_report() -> dict:
    return {"correlation": float("nan"), "best_offset_frames": None, "best_correlation": float("nan"), "frames": 0}


def _scored(mouth: np.ndarray, speech: np.ndarray, fps: float, max_offset: int) -> tuple[dict, dict[int, float]]:
    """The report and every offset's correlation of two syllable-band tracks."""
    frames = int((np.isfinite(mouth) & np.isfinite(speech)).sum())
    if frames < min_sync_frames(fps, max_offset):
        return {**_empty_report(), "frames": frames}, {}
    corrs = lagged_correlations(mouth, speech, max_offset)
    report = sync_report(mouth, speech, max_offset)
    return {**report, "frames": frames}, corrs


def lip_sync_report(
    opening: Float[np.ndarray, "n"],
    audio: LoadedAudio,
    times_s: Float[np.ndarray, "n"],
    fps: float,
    max_offset: int = 5,
) -> dict:
    """How well a mouth-opening track follows its speech (see the module docstring).

    Args:
        opening: mouth opening of consecutive frames; NaN where no face was found (short gaps are
            interpolated, frames of longer ones left out).
        audio: the speech.
        times_s: the time of each frame in `audio`.
        fps: frame rate of the clip.
        max_offset: largest delay, in frames either way, searched for the best offset.

    Returns correlation (offset 0), best_offset_frames (positive: the mouth moves after the sound; natural
    speech peaks at about -1, the mouth opening slightly before the sound), best_correlation and frames (the
    frames scored). With fewer than `min_sync_frames` usable frames the numbers are NaN and the offset None.
    """
    opening = np.asarray(opening, np.float64)
    if len(opening) != len(times_s):
        raise ValueError(f"{len(opening)} mouth openings but {len(times_s)} frame times")
    if np.isfinite(opening).sum() < min_sync_frames(fps, max_offset):
        return {**_empty_report(), "frames": int(np.isfinite(opening).sum())}
    mouth = syllable_band(opening, fps)
    speech = syllable_band(speech_amplitude(audio, times_s, fps), fps)
    return _scored(mouth, speech, fps, max_offset)[0]


def _shuffled_offsets(duration_s: float, span_s: float, count: int, seed: int) -> np.ndarray:
    """Circular offsets (s) of unrelated audio: at least `SHUFFLE_MIN_GAP_S` from the clip's own, and clear of its
    own stretch when the audio is long enough."""
    gap = SHUFFLE_MIN_GAP_S
    if duration_s >= span_s + 2 * gap + 1.0:  # audio from elsewhere in the track, not overlapping the clip
        gap = span_s + gap
    if duration_s - 2 * gap <= 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    return rng.uniform(gap, duration_s - gap, count)


def sync_validation(
    opening: Float[np.ndarray, "n"],
    audio: LoadedAudio,
    times_s: Float[np.ndarray, "n"],
    fps: float,
    shifts: tuple[int, ...] = (3, 4, 5),
    shuffles: int = 10,
    seed: int = 0,
    max_offset: int = 5,
) -> dict:
    """Whether the sync measure tells good sync from bad on this clip.

    Scores the clip's own audio at offset 0 (`correlation`), the video shifted by each of `shifts` frames
    either way (`shifted`, keyed "+3", "-3", ...: +k pairs frame t with the audio of frame t - k), and
    `shuffles` times unrelated audio: the same frame times moved by a random circular offset of the audio
    track, from elsewhere in the track when it is long enough, else a circular shift of the clip's own
    audio (`shuffled`, `shuffled_mean`, `shuffled_std`). `passes` when offset 0 beats every shifted score by
    `SHIFT_MARGIN` and the shuffled mean by `SHUFFLE_Z` shuffled standard deviations. Also gives the
    `lip_sync_report` entries (`best_offset_frames`, `best_correlation`, `frames`).
    """
    opening = np.asarray(opening, np.float64)
    times = np.asarray(times_s, np.float64)
    if len(opening) != len(times):
        raise ValueError(f"{len(opening)} mouth openings but {len(times)} frame times")
    amplitude = _BandAmplitude(audio, fps)
    mouth = syllable_band(opening, fps)
    reach = max([max_offset, *(abs(s) for s in shifts)])
    if np.isfinite(opening).sum() >= min_sync_frames(fps, reach):
        report, corrs = _scored(mouth, syllable_band(amplitude(times), fps), fps, reach)
    else:
        report, corrs = {**_empty_report(), "frames": int(np.isfinite(opening).sum())}, {}
    if corrs:  # the best offset within max_offset, as lip_sync_report gives it
        within = {k: v for k, v in corrs.items() if abs(k) <= max_offset and np.isfinite(v)}
        if within:
            best = max(within, key=lambda k: (within[k], -abs(k)))
            report.update(best_offset_frames=int(best), best_correlation=within[best])
    shifted = {f"{k:+d}": corrs.get(k, float("nan")) for s in sorted(shifts) for k in (-s, s)}
    scores = []
    if corrs:
        span = float(np.nanmax(times) - np.nanmin(times)) + 1.0 / fps
        for offset in _shuffled_offsets(amplitude.duration_s, span, shuffles, seed):
            moved = np.mod(times + offset, amplitude.duration_s)
            scores.append(_corr(mouth, syllable_band(amplitude(moved), fps)))
    scores = np.asarray(scores, np.float64)
    finite = scores[np.isfinite(scores)]
    mean = float(finite.mean()) if len(finite) else float("nan")
    std = float(finite.std()) if len(finite) > 1 else float("nan")
    r0 = report["correlation"]
    worst_shift = max((v for v in shifted.values() if np.isfinite(v)), default=float("nan"))
    passes = bool(np.isfinite(r0) and np.isfinite(worst_shift) and np.isfinite(mean) and np.isfinite(std))
    passes = passes and r0 - worst_shift >= SHIFT_MARGIN and r0 - mean >= SHUFFLE_Z * max(std, 1e-6)
    return {
        **report,
        "shifted": shifted,
        "max_shifted": worst_shift,
        "shuffled": [float(s) for s in scores],
        "shuffled_mean": mean,
        "shuffled_std": std,
        "passes": passes,
    }


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

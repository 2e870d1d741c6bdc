"""The lip measures of a rendered clip, the same for `aenerf-eval`, `aenerf-bench` and `aenerf-method-bench`.

From the face-mesh landmarks of the renders and of their reference frames (`mouth_landmarks`):
- with ground truth (self-driven): LMD (`landmark_distance`), the agreement of the rendered mouth opening
  with the true one, and every sync measure for the ground truth too, as the yardstick;
- always: the weight-free sync measure of the mouth opening against the speech (`sync_metrics`), and
  SyncNet's LSE-C / LSE-D when its weights are on disk (`syncnet_score`), else the reason they are skipped.

Cross-driven clips have no ground truth: their reference frames are the training frames of the same poses,
used only to place the face, and the measures that compare with the truth are given as skipped.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, UInt8

from aenerf_ns.audio.audio_io import LoadedAudio

NO_TRUTH = "skipped: cross-driven (no ground-truth frames for this audio)"
"""What the measures that need ground truth say in cross-driven reports."""
MIN_FACE_SHARE = 0.8
"""Sync measures need a face in at least this share of the frames."""


def _filled(landmarks: Float[np.ndarray, "n 468 3"]) -> Float[np.ndarray, "n 468 3"]:
    """Frames without landmarks take the nearest frame's (SyncNet's crop needs a face box in every frame)."""
    ok = np.flatnonzero(np.isfinite(landmarks).all((1, 2)))
    nearest = ok[np.abs(np.arange(len(landmarks))[:, None] - ok[None]).argmin(1)]
    return landmarks[nearest]


def _from_first_frame(audio: LoadedAudio, times_s: Float[np.ndarray, "n"], fps: float) -> LoadedAudio:
    """The audio from the start of the clip's first frame: SyncNet pairs frame k with audio at k / fps."""
    import dataclasses

    start = max(0, int(round((float(times_s[0]) - 0.5 / fps) * audio.sample_rate)))
    return dataclasses.replace(audio, samples=audio.samples[start:])


def syncnet_entries(
    syncnet, skip: str | None, frames, landmarks, audio: LoadedAudio, times_s, fps: float, suffix: str
) -> dict:
    """LSE-C, LSE-D and SyncNet's offset of one clip, or the skip reason in each."""
    if syncnet is None:
        return {f"lse_c{suffix}": skip, f"lse_d{suffix}": skip}
    from aenerf_ns.evaluation.syncnet_score import syncnet_scores

    try:
        scores = syncnet_scores(syncnet, frames, _filled(landmarks), _from_first_frame(audio, times_s, fps), fps)
    except ValueError as error:  # too short a clip for SyncNet's windows and offset search
        reason = f"skipped: {error}"
        return {f"lse_c{suffix}": reason, f"lse_d{suffix}": reason}
    return {
        f"lse_c{suffix}": scores["lse_c"],
        f"lse_d{suffix}": scores["lse_d"],
        f"syncnet_offset_frames{suffix}": scores["offset_frames"],
    }


def _sync_entries(
    opening: Float[np.ndarray, "n"],
    frames: list,
    landmarks: Float[np.ndarray, "n 468 3"],
    audio: LoadedAudio,
    times_s: Float[np.ndarray, "n"],
    fps: float,
    max_offset: int,
    syncnet,
    syncnet_skip: str | None,
    suffix: str,
) -> dict:
    """The weight-free sync report and SyncNet's scores of one clip (rendered, or the ground truth)."""
    from aenerf_ns.evaluation.sync_metrics import lip_sync_report

    if np.isfinite(opening).mean() < MIN_FACE_SHARE:
        reason = f"skipped: no face found in more than {1 - MIN_FACE_SHARE:.0%} of the frames"
        return {f"av_sync{suffix}": reason, f"lse_c{suffix}": reason, f"lse_d{suffix}": reason}
    return {
        f"av_sync{suffix}": lip_sync_report(opening, audio, times_s, fps, max_offset),
        **syncnet_entries(syncnet, syncnet_skip, frames, landmarks, audio, times_s, fps, suffix),
    }


def _widest_gaps(rendered: Float[np.ndarray, "n"], truth: Float[np.ndarray, "n"]) -> dict:
    """How wide the mouths open at their widest (the 90th percentile of the lip gap, pixels at 512 px height),
    over the frames where both have landmarks."""
    both = np.isfinite(rendered) & np.isfinite(truth)
    if not both.any():
        return {"rendered_gap_p90_px": float("nan"), "truth_gap_p90_px": float("nan")}
    return {
        "rendered_gap_p90_px": float(np.percentile(rendered[both], 90)),
        "truth_gap_p90_px": float(np.percentile(truth[both], 90)),
    }


def lip_scores(
    renders: list[UInt8[np.ndarray, "h w 3"]],
    references: list[UInt8[np.ndarray, "h w 3"]],
    audio: LoadedAudio | None,
    times_s: Float[np.ndarray, "n"],
    fps: float,
    ground_truth: bool = True,
    max_offset: int = 5,
    syncnet=None,
    syncnet_skip: str | None = None,
    audio_skip: str = "skipped: the clip has no audio",
    device: str = "cpu",
) -> dict:
    """Every lip measure of `renders` (consecutive frames in time order, shown at `times_s` of `audio`).

    Args:
        renders: the rendered frames.
        references: the ground-truth frames (`ground_truth`), else frames of the same poses that place the face.
        audio: the speech that drove the renders (None: sync measures are skipped).
        times_s: the time of each frame in `audio`.
        fps: frame rate of the clip.
        ground_truth: whether `references` are the true frames of `renders`.
        max_offset: largest audio-video delay (frames, either way) the weight-free sync search considers.
        syncnet: a loaded SyncNet (`syncnet_score.syncnet_metric`), or None with `syncnet_skip` saying why.
        audio_skip: what the sync measures say when `audio` is None.
        device: where the face mesh runs.

    Returns the report entries, plus the landmark tracks under `_rendered_landmarks` and `_reference_landmarks`
    (for the pictures of `mouth_pictures`; callers pop them before writing a report).
    """
    from aenerf_ns.evaluation.landmark_distance import landmark_distance
    from aenerf_ns.evaluation.mouth_landmarks import mouth_opening, opening_agreement, paired_landmarks
    from aenerf_ns.evaluation.mouth_pictures import lip_gap_px

    render_lm, reference_lm = paired_landmarks(renders, references, device)
    rendered_open = mouth_opening(render_lm)
    result: dict = {"_rendered_landmarks": render_lm, "_reference_landmarks": reference_lm}
    if ground_truth:
        lmd = landmark_distance(render_lm, reference_lm, renders[0].shape[0])
        result.update(lmd=lmd["lmd"], lmd_eye_units=lmd["lmd_eye_units"], lmd_frames=lmd["frames"])
        result["mouth_opening"] = opening_agreement(rendered_open, mouth_opening(reference_lm))
        height = renders[0].shape[0]
        result["mouth_opening"].update(_widest_gaps(lip_gap_px(render_lm, height), lip_gap_px(reference_lm, height)))
    else:
        result.update(lmd=NO_TRUTH, mouth_opening=NO_TRUTH)
    if audio is None:
        suffixes = ("", "_ground_truth") if ground_truth else ("",)
        return {**result, **{f"{m}{s}": audio_skip for s in suffixes for m in ("av_sync", "lse_c", "lse_d")}}
    syncnet_skip = syncnet_skip or "skipped: SyncNet not loaded"
    clip = (audio, times_s, fps, max_offset, syncnet, syncnet_skip)
    result.update(_sync_entries(rendered_open, renders, reference_lm, *clip, ""))
    if ground_truth:
        result.update(_sync_entries(mouth_opening(reference_lm), references, reference_lm, *clip, "_ground_truth"))
    return result

"""Evaluating a trained talking head: held-out frames with their own audio, or any new audio (sync only).

Self-driven (`evaluate_heldout`): held-out frames are rendered with the clip's own audio and compared with
the ground truth: PSNR, SSIM, lower-face PSNR/MSE, parsing accuracy, mouth-interior IoU and opening error,
and the lip measures of `lip_scores` (LMD, mouth opening against the truth's, the weight-free sync measure,
SyncNet's LSE-C / LSE-D; sync on consecutive frames). LPIPS and SyncNet are computed when their weights
are on disk. Writes `metrics.json`, `heldout_strip.png` (rows: ground truth | render | error),
`mouth_opening.png` (the lip gap of truth and render over time, in pixels at 512 px height) and
`mouth_closeup.png` (truth above render, at the clip's widest openings).

Cross-driven (`evaluate_cross_driven`): another audio file drives the training poses; only the sync
measures apply, and the others are listed as skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from rich.progress import Progress

from aenerf_ns.data.parsing_labels import MOUTH_INTERIOR
from aenerf_ns.data.talking_head_metadata import TalkingHeadMetadata, talking_head_metadata
from aenerf_ns.evaluation.lip_scores import NO_TRUTH, lip_scores
from aenerf_ns.evaluation.lpips_metric import lpips_metric
from aenerf_ns.evaluation.metric_reports import write_report
from aenerf_ns.evaluation.mouth_pictures import lip_gap_px, mouth_closeup_strip, plot_lip_gap
from aenerf_ns.evaluation.sync_metrics import mask_iou, min_sync_frames, mouth_extent, speech_envelope
from aenerf_ns.evaluation.syncnet_score import syncnet_metric
from aenerf_ns.utils.atomic_io import atomic_save_png
from aenerf_ns.utils.image_metrics import to_uint8


@dataclass
class FrameScores:
    """What scoring held-out frames one at a time collects, in frame order."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    """The model's image metrics (and LPIPS) of each frame, by metric name."""
    strip_rows: list[np.ndarray] = field(default_factory=list)
    """uint8 ground truth | render | error images of the frames picked for the strip."""
    mouth_render: list[float] = field(default_factory=list)
    """Rendered mouth-interior probability, averaged over the image."""
    mouth_truth: list[float] = field(default_factory=list)
    """Fraction of the true label map that is mouth interior (frames with label maps)."""
    height_errors: list[float] = field(default_factory=list)
    """Rendered minus true mouth height, absolute, in pixels (frames with label maps)."""
    ious: list[float] = field(default_factory=list)
    """Rendered vs true mouth-interior IoU (frames where either mask is non-empty)."""
    renders: list[np.ndarray] = field(default_factory=list)
    """uint8 rendered frames, for the lip measures."""
    truths: list[np.ndarray] = field(default_factory=list)
    """uint8 ground-truth frames, for the lip measures."""


def _frame_picks(n: int, max_frames: int | None, consecutive: bool) -> Int[np.ndarray, "k"]:
    count = n if max_frames is None else min(max_frames, n)
    if consecutive:
        return np.arange(count)
    return np.unique(np.linspace(0, n - 1, count).round().astype(int))


def _score_mouth(probs: Float[torch.Tensor, "h w c"], batch: dict, scores: FrameScores) -> None:
    """Add one frame's mouth opening, and with a true label map its mouth height error and IoU, to `scores`."""
    rendered_mouth = (probs.argmax(-1) == MOUTH_INTERIOR).cpu().numpy()
    scores.mouth_render.append(float(probs[..., MOUTH_INTERIOR].mean()))
    if "parsing" in batch:
        true_mouth = (batch["parsing"][..., 0] == MOUTH_INTERIOR).numpy()
        scores.mouth_truth.append(float(true_mouth.mean()))
        scores.height_errors.append(abs(mouth_extent(rendered_mouth) - mouth_extent(true_mouth)))
        iou = mask_iou(rendered_mouth, true_mouth)
        if iou is not None:
            scores.ious.append(iou)


def _score_frames(model, dataset, picks: Int[np.ndarray, "k"], strip_picks: set, lpips) -> FrameScores:
    """Render each picked frame of `dataset` from its own camera and audio, and score it against the truth."""
    scores = FrameScores()
    with Progress(transient=True) as progress:
        task = progress.add_task("evaluating held-out frames", total=len(picks))
        for i in picks:
            camera = dataset.cameras[int(i) : int(i) + 1].to(model.device)
            batch = dataset[int(i)]
            outputs = model.get_outputs_for_camera(camera)
            metrics, images = model.get_image_metrics_and_images(outputs, batch)
            if lpips is not None:
                pred = outputs["rgb"].permute(2, 0, 1)[None].clamp(0, 1)
                gt = batch["image"][..., :3].to(model.device).permute(2, 0, 1)[None]
                metrics["lpips"] = float(lpips(pred, gt))
            for k, v in metrics.items():
                scores.metrics.setdefault(k, []).append(float(v))
            _score_mouth(outputs["parsing_probs"], batch, scores)
            scores.renders.append(to_uint8(outputs["rgb"]))
            scores.truths.append(to_uint8(batch["image"][..., :3]))
            if i in strip_picks:
                scores.strip_rows.append(to_uint8(images["img"]))
            progress.advance(task)
    return scores


def _summarize(scores: FrameScores, num_frames: int, lpips_skip: str | None) -> dict:
    """Frame means of the scores, with LPIPS given as a number or as the reason it is skipped."""
    result: dict = {k: float(np.mean(v)) for k, v in scores.metrics.items()}
    result["num_frames"] = num_frames
    result["lpips"] = result.get("lpips", lpips_skip)
    if scores.height_errors:
        result["mouth_height_error_px"] = float(np.mean(scores.height_errors))
        result["mouth_iou"] = float(np.mean(scores.ious)) if scores.ious else None
    return result


def _true_mouth_opening(
    meta: TalkingHeadMetadata, picks: Int[np.ndarray, "k"], scores: FrameScores
) -> Float[np.ndarray, "k"] | None:
    """Ground-truth mouth opening of the picked frames: the dataset's own values, else the label maps' areas."""
    if meta.mouth_open is not None:
        return meta.mouth_open.numpy()[picks]
    return np.array(scores.mouth_truth) if scores.mouth_truth else None


def _heldout_audio(meta: TalkingHeadMetadata, picks: Int[np.ndarray, "k"], consecutive: bool, max_offset: int):
    """(the audio of the scored frames, None) when the sync measures apply, else (None, the reason).

    Sync is measured only on consecutive frames of one identity, against that identity's own audio track.
    """
    identities = set(meta.image_identity.numpy()[picks].tolist())
    if not consecutive:
        return None, "skipped: needs consecutive frames (aenerf-eval scores consecutive frames)"
    if len(identities) != 1:
        return None, "skipped: the scored frames span several identities"
    fewest = min_sync_frames(meta.fps, max_offset)
    if len(picks) < fewest:
        return None, f"skipped: needs at least {fewest} consecutive frames"
    from aenerf_ns.audio.audio_io import load_audio

    return load_audio(meta.identities[identities.pop()].audio_path), None


@torch.no_grad()
def evaluate_heldout(
    pipeline,
    output_dir: Path,
    max_frames: int | None = 25,
    strip_frames: int = 4,
    consecutive: bool = False,
    max_offset: int = 5,
    use_lpips: bool = True,
    syncnet_weights: Path | None = None,
) -> dict:
    """Render held-out frames with their own audio, score them, and write the report files.

    Args:
        pipeline: a loaded talking-head pipeline (its eval dataset holds the held-out frames).
        output_dir: where metrics.json, heldout_strip.png and mouth_opening.png go.
        max_frames: frames to score (None: all held-out frames).
        strip_frames: rows of the image strip.
        consecutive: score the first `max_frames` frames in order instead of frames spread over the split;
            the audio-visual sync measures need consecutive frames.
        max_offset: largest audio-video delay (frames, either way) the sync search considers.
        use_lpips: compute LPIPS when its weights are on disk.
        syncnet_weights: SyncNet's weights file (default: `offline_weights.syncnet_weights_path()`).
    """
    output_dir = Path(output_dir)
    model = pipeline.model
    model.eval()
    dataset = pipeline.datamanager.eval_dataset
    meta = talking_head_metadata(dataset.metadata)
    picks = _frame_picks(len(dataset), max_frames, consecutive)
    strip_picks = set(picks[np.linspace(0, len(picks) - 1, min(strip_frames, len(picks))).round().astype(int)])
    lpips, lpips_skip = lpips_metric(model.device) if use_lpips else (None, "skipped: disabled")
    scores = _score_frames(model, dataset, picks, strip_picks, lpips)
    result = _summarize(scores, len(picks), lpips_skip)

    mouth_render = np.array(scores.mouth_render)
    truth = _true_mouth_opening(meta, picks, scores)
    if truth is not None and len(picks) > 2 and np.std(truth) > 0 and np.std(mouth_render) > 0:
        result["mouth_open_correlation"] = float(np.corrcoef(truth, mouth_render)[0, 1])
    fps = meta.fps
    times = (meta.frame_indices.numpy()[picks] + 0.5) / fps
    audio, audio_skip = _heldout_audio(meta, picks, consecutive, max_offset)
    syncnet, syncnet_skip = syncnet_metric(syncnet_weights, model.device)
    lips = lip_scores(
        scores.renders,
        scores.truths,
        audio,
        times,
        fps,
        True,
        max_offset,
        syncnet,
        syncnet_skip,
        audio_skip,
        model.device,
    )
    render_lm, truth_lm = lips.pop("_rendered_landmarks"), lips.pop("_reference_landmarks")
    height = scores.truths[0].shape[0]
    series = {"ground truth": lip_gap_px(truth_lm, height), "rendered": lip_gap_px(render_lm, height)}
    result.update(lips)

    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_png(output_dir / "heldout_strip.png", np.concatenate(scores.strip_rows, 0))
    closeups = mouth_closeup_strip(scores.renders, scores.truths, truth_lm)
    if closeups is not None:
        atomic_save_png(output_dir / "mouth_closeup.png", closeups)
    envelope = speech_envelope(audio, times, fps) if audio is not None else None
    plot_lip_gap(output_dir / "mouth_opening.png", times, series, envelope)
    write_report(output_dir, result)
    return result


def _pose_frames(pipeline, identity: int, schedule: Int[np.ndarray, "n"]) -> list[np.ndarray]:
    """The training frame (uint8 RGB) of each scheduled pose of `identity`: where the face is in each render."""
    dataset = pipeline.datamanager.train_dataset
    own = (dataset.cameras.metadata["identity"].reshape(-1).round().long() == identity).nonzero().reshape(-1)
    cache: dict[int, np.ndarray] = {}
    for index in set(schedule.tolist()):
        cache[index] = dataset.get_numpy_image(int(own[index]))[..., :3]
    return [cache[int(index)] for index in schedule]


@torch.no_grad()
def evaluate_cross_driven(
    pipeline,
    audio_path: Path,
    feature_config,
    output_dir: Path,
    max_frames: int | None = 250,
    max_offset: int = 5,
    identity: int = 0,
    syncnet_weights: Path | None = None,
) -> dict:
    """Drive the training poses with another audio file and measure lip sync only (no ground truth exists)."""
    from aenerf_ns.audio.audio_features import num_video_frames
    from aenerf_ns.audio.audio_io import load_audio
    from aenerf_ns.inference.audio_render import (
        audio_track_features,
        identity_poses,
        pose_schedule,
        render_cameras,
        render_with_audio,
    )

    output_dir = Path(output_dir)
    model = pipeline.model
    model.eval()
    parsed = pipeline.datamanager.train_dataparser_outputs
    fps = talking_head_metadata(parsed.metadata).fps
    audio = load_audio(audio_path)
    total = num_video_frames(audio, fps)
    count = total if max_frames is None else min(total, max_frames)
    features = audio_track_features(audio, fps, total, feature_config)
    poses = identity_poses(parsed.cameras, identity)
    schedule = pose_schedule(count, len(poses), "pingpong")
    cameras = render_cameras(poses, schedule, identity)
    renders = render_with_audio(model, cameras, features, label="rendering with the new audio", transient=True)
    times = (np.arange(count) + 0.5) / fps
    fewest = min_sync_frames(fps, max_offset)
    syncnet, syncnet_skip = syncnet_metric(syncnet_weights, model.device)
    lips = lip_scores(
        renders,
        _pose_frames(pipeline, identity, schedule),
        audio if count >= fewest else None,
        times,
        fps,
        False,
        max_offset,
        syncnet,
        syncnet_skip,
        f"skipped: needs at least {fewest} frames",
        model.device,
    )
    gap = lip_gap_px(lips.pop("_rendered_landmarks"), renders[0].shape[0])
    lips.pop("_reference_landmarks")
    image_metrics = ("psnr", "ssim", "lower_face_psnr", "lpips", "mouth_iou", "mouth_height_error_px")
    result: dict = {k: NO_TRUTH for k in image_metrics}
    result.update(mode="cross-driven", audio=str(audio_path), num_frames=count, **lips)
    output_dir.mkdir(parents=True, exist_ok=True)
    strip_at = np.linspace(0, count - 1, min(4, count)).round().astype(int)
    atomic_save_png(output_dir / "render_strip.png", np.concatenate([renders[t] for t in strip_at], 1))
    envelope = speech_envelope(audio, times, fps)
    plot_lip_gap(output_dir / "mouth_opening.png", times, {"rendered": gap}, envelope)
    write_report(output_dir, result)
    return result

"""Evaluating a trained talking head: held-out frames with their own audio, or any new audio (sync only).

Self-driven (`evaluate_heldout`): held-out frames are rendered with the clip's own audio and compared with
the ground truth: PSNR, SSIM, lower-face PSNR/MSE, parsing accuracy, mouth-interior IoU and opening error,
mouth-opening correlation with the truth, and the weight-free audio-visual sync measures of
`sync_metrics` (on consecutive frames). LPIPS is computed when its AlexNet weights are on disk. Writes
`metrics.json`, `heldout_strip.png` (rows: ground truth | render | error) and `mouth_opening.png`.

Cross-driven (`evaluate_cross_driven`): another audio file drives the training poses; only the sync-type
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
from aenerf_ns.evaluation.lpips_metric import lpips_metric
from aenerf_ns.evaluation.metric_reports import plot_mouth_opening, write_report
from aenerf_ns.evaluation.sync_metrics import mask_iou, mouth_extent, speech_envelope, sync_report
from aenerf_ns.utils.atomic_io import atomic_save_png
from aenerf_ns.utils.image_metrics import to_uint8

SYNCNET_SKIP = "skipped: SyncNet confidence needs pretrained SyncNet weights, which are neither bundled nor downloaded"


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
            if i in strip_picks:
                scores.strip_rows.append(to_uint8(images["img"]))
            progress.advance(task)
    return scores


def _summarize(scores: FrameScores, num_frames: int, lpips_skip: str | None) -> dict:
    """Frame means of the scores, with LPIPS and SyncNet given as numbers or as the reason they are skipped."""
    result: dict = {k: float(np.mean(v)) for k, v in scores.metrics.items()}
    result["num_frames"] = num_frames
    result["lpips"] = result.get("lpips", lpips_skip)
    result["syncnet_confidence"] = SYNCNET_SKIP
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


def _heldout_sync(
    meta: TalkingHeadMetadata,
    picks: Int[np.ndarray, "k"],
    times: Float[np.ndarray, "k"],
    fps: float,
    consecutive: bool,
    max_offset: int,
    mouth_render: Float[np.ndarray, "k"],
    truth: Float[np.ndarray, "k"] | None,
) -> tuple[dict, Float[np.ndarray, "k"] | None]:
    """The audio-visual sync entries of the report and the speech envelope (None when sync is skipped).

    Sync is measured only on consecutive frames of one identity, against that identity's own audio track.
    """
    identities = set(meta.image_identity.numpy()[picks].tolist())
    if not consecutive:
        return {"av_sync": "skipped: needs consecutive frames (aenerf-eval scores consecutive frames)"}, None
    if len(identities) != 1:
        return {"av_sync": "skipped: the scored frames span several identities"}, None
    if len(picks) < 2 * max_offset + 3:
        return {"av_sync": f"skipped: needs at least {2 * max_offset + 3} frames"}, None
    from aenerf_ns.audio.audio_io import load_audio

    identity_audio = meta.identities[identities.pop()].audio_path
    envelope = speech_envelope(load_audio(identity_audio), times, fps)
    entries = {"av_sync": sync_report(mouth_render, envelope, max_offset)}
    if truth is not None:
        entries["av_sync_ground_truth"] = sync_report(truth, envelope, max_offset)
    return entries, envelope


@torch.no_grad()
def evaluate_heldout(
    pipeline,
    output_dir: Path,
    max_frames: int | None = 25,
    strip_frames: int = 4,
    consecutive: bool = False,
    max_offset: int = 5,
    use_lpips: bool = True,
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
    sync, envelope = _heldout_sync(meta, picks, times, fps, consecutive, max_offset, mouth_render, truth)
    result.update(sync)

    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_png(output_dir / "heldout_strip.png", np.concatenate(scores.strip_rows, 0))
    series = {"rendered": mouth_render}
    if truth is not None:
        series = {"ground truth": truth, **series}
    plot_mouth_opening(output_dir / "mouth_opening.png", times, series, envelope)
    write_report(output_dir, result)
    return result


@torch.no_grad()
def evaluate_cross_driven(
    pipeline,
    audio_path: Path,
    feature_config,
    output_dir: Path,
    max_frames: int | None = 250,
    max_offset: int = 5,
    identity: int = 0,
) -> dict:
    """Drive the training poses with another audio file and measure lip sync only (no ground truth exists)."""
    from aenerf_ns.audio.audio_features import num_video_frames
    from aenerf_ns.audio.audio_io import load_audio
    from aenerf_ns.inference.audio_render import drive_with_audio, identity_poses, pose_schedule, render_cameras

    output_dir = Path(output_dir)
    model = pipeline.model
    model.eval()
    parsed = pipeline.datamanager.train_dataparser_outputs
    fps = talking_head_metadata(parsed.metadata).fps
    audio = load_audio(audio_path)
    total = num_video_frames(audio, fps)
    count = total if max_frames is None else min(total, max_frames)
    drive_with_audio(model, audio, fps, total, feature_config)
    poses = identity_poses(parsed.cameras, identity)
    frame_cameras = render_cameras(poses, pose_schedule(count, len(poses), "pingpong"), identity)
    mouth, strip = [], []
    strip_at = set(np.linspace(0, count - 1, min(4, count)).round().astype(int).tolist())
    with Progress(transient=True) as progress:
        task = progress.add_task("rendering with the new audio", total=count)
        for t, camera in enumerate(frame_cameras):
            outputs = model.get_outputs_for_camera(camera.to(model.device))
            mouth.append(float(outputs["parsing_probs"][..., MOUTH_INTERIOR].mean()))
            if t in strip_at:
                strip.append(to_uint8(outputs["rgb"]))
            progress.advance(task)
    times = (np.arange(count) + 0.5) / fps
    envelope = speech_envelope(audio, times, fps)
    reason = "skipped: cross-driven (no ground-truth frames for this audio)"
    image_metrics = ("psnr", "ssim", "lower_face_psnr", "lpips", "mouth_iou", "mouth_height_error_px")
    result: dict = {k: reason for k in image_metrics}
    result.update(
        mode="cross-driven",
        audio=str(audio_path),
        num_frames=count,
        syncnet_confidence=SYNCNET_SKIP,
        av_sync=sync_report(np.array(mouth), envelope, max_offset)
        if count >= 2 * max_offset + 3
        else f"skipped: needs at least {2 * max_offset + 3} frames",
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_png(output_dir / "render_strip.png", np.concatenate(strip, 1))
    plot_mouth_opening(output_dir / "mouth_opening.png", times, {"rendered": np.array(mouth)}, envelope)
    write_report(output_dir, result)
    return result

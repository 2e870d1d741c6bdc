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

import json
import math
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from aenerf_ns.data.parsing_labels import MOUTH_INTERIOR
from aenerf_ns.evaluation.sync_metrics import mask_iou, mouth_extent, speech_envelope, sync_report
from aenerf_ns.utils.atomic_io import atomic_save_png, atomic_write_bytes
from aenerf_ns.utils.image_metrics import to_uint8
from aenerf_ns.utils.offline_weights import alexnet_weights_path

SYNCNET_SKIP = "skipped: SyncNet confidence needs pretrained SyncNet weights, which are neither bundled nor downloaded"


def lpips_metric(device: torch.device | str = "cpu"):
    """(LPIPS module, None) when AlexNet weights are in the torch hub cache, else (None, reason)."""
    weights = alexnet_weights_path()
    if not weights.is_file():
        return None, f"skipped: LPIPS needs AlexNet weights at {weights} (not downloaded at run time)"
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device).eval(), None


def json_safe(value):
    """`value` with non-finite floats replaced by None (JSON has no NaN), through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def format_metric(value) -> str:
    """A metric as the console tables show it: floats to 4 places, sync reports as "name value" pairs."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(output_dir: Path, result: dict) -> None:
    """metrics.json (non-finite numbers become null)."""
    atomic_write_bytes(Path(output_dir) / "metrics.json", json.dumps(json_safe(result), indent=2).encode())


def plot_mouth_opening(path: Path, times: np.ndarray, series: dict[str, np.ndarray], envelope: np.ndarray | None):
    """Mouth opening over time (each series scaled to [0, 1]) with the speech envelope beneath, as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def unit(x):
        x = np.asarray(x, float)
        span = x.max() - x.min() if len(x) else 0
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)

    rows = 2 if envelope is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.4 * rows), sharex=True, squeeze=False)
    for name, values in series.items():
        axes[0, 0].plot(times, unit(values), label=name, linewidth=1.4)
    axes[0, 0].set_ylabel("mouth opening (scaled)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    if envelope is not None:
        axes[1, 0].plot(times, envelope, color="0.3", linewidth=1.0)
        axes[1, 0].set_ylabel("speech energy (dB)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def _frame_picks(n: int, max_frames: int | None, consecutive: bool) -> np.ndarray:
    count = n if max_frames is None else min(max_frames, n)
    if consecutive:
        return np.arange(count)
    return np.unique(np.linspace(0, n - 1, count).round().astype(int))


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
    meta = dataset.metadata
    picks = _frame_picks(len(dataset), max_frames, consecutive)
    strip_picks = set(picks[np.linspace(0, len(picks) - 1, min(strip_frames, len(picks))).round().astype(int)])
    lpips, lpips_skip = lpips_metric(model.device) if use_lpips else (None, "skipped: disabled")
    per_frame: dict[str, list[float]] = {}
    rows, mouth_render, mouth_truth, heights, ious = [], [], [], [], []
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
                per_frame.setdefault(k, []).append(float(v))
            probs = outputs["parsing_probs"]
            rendered_mouth = (probs.argmax(-1) == MOUTH_INTERIOR).cpu().numpy()
            mouth_render.append(float(probs[..., MOUTH_INTERIOR].mean()))
            if "parsing" in batch:
                true_mouth = (batch["parsing"][..., 0] == MOUTH_INTERIOR).numpy()
                mouth_truth.append(float(true_mouth.mean()))
                heights.append(abs(mouth_extent(rendered_mouth) - mouth_extent(true_mouth)))
                iou = mask_iou(rendered_mouth, true_mouth)
                if iou is not None:
                    ious.append(iou)
            if i in strip_picks:
                rows.append(to_uint8(images["img"]))
            progress.advance(task)

    result: dict = {k: float(np.mean(v)) for k, v in per_frame.items()}
    result["num_frames"] = len(picks)
    result["lpips"] = result.get("lpips", lpips_skip)
    result["syncnet_confidence"] = SYNCNET_SKIP
    if heights:
        result["mouth_height_error_px"] = float(np.mean(heights))
        result["mouth_iou"] = float(np.mean(ious)) if ious else None
    truth = meta.get("mouth_open")
    truth = truth.numpy()[picks] if truth is not None else (np.array(mouth_truth) if mouth_truth else None)
    if truth is not None and len(picks) > 2 and np.std(truth) > 0 and np.std(mouth_render) > 0:
        result["mouth_open_correlation"] = float(np.corrcoef(truth, mouth_render)[0, 1])

    fps = float(meta.get("fps") or 25.0)
    frame_indices = meta.get("frame_indices")
    times = (frame_indices.numpy()[picks] + 0.5) / fps if frame_indices is not None else (picks + 0.5) / fps
    envelope = None
    identity = meta.get("image_identity")
    one_identity = identity is None or len(set(identity.numpy()[picks].tolist())) == 1
    if not consecutive:
        result["av_sync"] = "skipped: needs consecutive frames (aenerf-eval scores consecutive frames)"
    elif not one_identity or meta.get("audio_path") is None:
        result["av_sync"] = "skipped: the scored frames span several identities"
    elif len(picks) < 2 * max_offset + 3:
        result["av_sync"] = f"skipped: needs at least {2 * max_offset + 3} frames"
    else:
        from aenerf_ns.audio.audio_io import load_audio

        identity_audio = Path(meta["audio_path"])
        envelope = speech_envelope(load_audio(identity_audio), times, fps)
        result["av_sync"] = sync_report(np.array(mouth_render), envelope, max_offset)
        if truth is not None:
            result["av_sync_ground_truth"] = sync_report(truth, envelope, max_offset)

    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_png(output_dir / "heldout_strip.png", np.concatenate(rows, 0))
    series = {"rendered": np.array(mouth_render)}
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
    fps = float(parsed.metadata["fps"])
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

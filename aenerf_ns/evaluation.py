"""Held-out evaluation of a trained talking-head pipeline: metrics, an image strip, a metrics JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from aenerf_ns.atomic_io import atomic_save_png, atomic_write_bytes
from aenerf_ns.parsing_labels import MOUTH_INTERIOR


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def evaluate_heldout(pipeline, output_dir: Path, max_frames: int = 25, strip_frames: int = 4) -> dict:
    """Render up to `max_frames` evenly spaced held-out frames with their own audio and score them.

    Writes `metrics.json` and `heldout_strip.png` (rows: ground truth | render | error) into `output_dir`
    and returns the metrics: means of PSNR, SSIM, lower-face PSNR and parsing accuracy, plus the
    correlation between rendered and true mouth opening where the dataset records it.
    """
    output_dir = Path(output_dir)
    model = pipeline.model
    model.eval()
    dataset = pipeline.datamanager.eval_dataset
    n = len(dataset)
    picks = np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int))
    strip_picks = set(picks[np.linspace(0, len(picks) - 1, min(strip_frames, len(picks))).round().astype(int)])
    per_frame: dict[str, list[float]] = {}
    rows = []
    mouth_area = []
    with Progress(transient=True) as progress:
        task = progress.add_task("evaluating held-out frames", total=len(picks))
        for i in picks:
            camera = dataset.cameras[int(i) : int(i) + 1].to(model.device)
            batch = dataset[int(i)]
            outputs = model.get_outputs_for_camera(camera)
            metrics, images = model.get_image_metrics_and_images(outputs, batch)
            for k, v in metrics.items():
                per_frame.setdefault(k, []).append(float(v))
            mouth_area.append(float(outputs["parsing_probs"][..., MOUTH_INTERIOR].mean()))
            if i in strip_picks:
                rows.append(_to_uint8(images["img"]))
            progress.advance(task)
    result = {k: float(np.mean(v)) for k, v in per_frame.items()}
    result["num_frames"] = len(picks)
    mouth_open = dataset.metadata.get("mouth_open")
    if mouth_open is not None and len(picks) > 2:
        truth = mouth_open.numpy()[picks]
        if np.std(truth) > 0 and np.std(mouth_area) > 0:
            result["mouth_open_correlation"] = float(np.corrcoef(truth, mouth_area)[0, 1])
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_png(output_dir / "heldout_strip.png", np.concatenate(rows, 0))
    atomic_write_bytes(output_dir / "metrics.json", json.dumps(result, indent=2).encode())
    return result

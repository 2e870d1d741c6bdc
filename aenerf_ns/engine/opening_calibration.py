"""How far the fields draw the mouth opening they are told, measured on training frames once training ends: the
gain on the opening predicted from the audio when rendering (`AudioDrivenModel.opening_gain`).

Small fields trained for a few thousand steps draw each training frame's mouth less open than it was, and less
closed: told their true openings, the anchor clip's training frames render a lip gap that spreads about 0.62 times
as far as the speaker's, and unseen speech inherits that shrinkage. The gain undoes it where it is measured: the
training frames' true spread over their rendered spread, both read by the face-mesh tracking that `aenerf-eval`
scores with, on training frames picked evenly across the range of their true openings. It stretches predicted
openings only; training and this measurement tell the true ones.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float, Int
from rich.progress import Progress
from torch import Tensor

from aenerf_ns.evaluation.mouth_landmarks import mouth_openings, opening_agreement
from aenerf_ns.utils.image_metrics import to_uint8

CALIBRATION_FRAMES = 32
"""Training frames rendered to measure the gain."""
MIN_TRACKED_FRAMES = 8
"""Frames the tracker must read in both the truth and the render for a gain to be set."""
GAIN_RANGE = (1 / 3, 3.0)
"""The gain is clipped to this range (a render that barely moves its mouth would ask for any gain)."""


def calibration_picks(openings: Float[Tensor, " n"], count: int = CALIBRATION_FRAMES) -> Int[np.ndarray, " k"]:
    """Indices of up to `count` frames whose true openings (NaN: unknown) are evenly spaced in rank, from the most
    closed to the most open."""
    values = openings.detach().cpu().double().numpy()
    known = np.flatnonzero(np.isfinite(values))
    if len(known) == 0:
        return known
    ranked = known[np.argsort(values[known], kind="stable")]
    return np.unique(ranked[np.linspace(0, len(ranked) - 1, min(count, len(ranked))).round().astype(int)])


def gain_from_openings(rendered: Float[np.ndarray, " k"], truth: Float[np.ndarray, " k"]) -> float | None:
    """The truth's spread over the render's, clipped to `GAIN_RANGE`; None when too few frames were read or the
    render does not move."""
    agreement = opening_agreement(rendered, truth)
    ratio = agreement["motion_ratio"]
    if agreement["frames"] < MIN_TRACKED_FRAMES or not np.isfinite(ratio) or ratio <= 0:
        return None
    return float(np.clip(1.0 / ratio, *GAIN_RANGE))


def _render_training_frames(model, dataset, picks: Int[np.ndarray, " k"]) -> tuple[list, list]:
    """(renders, truths) of training frames as uint8 images, the renders told the frames' true openings."""
    renders, truths = [], []
    was_training = model.training
    model.eval()
    model.telling_true_openings = True
    try:
        with torch.no_grad(), Progress(transient=True) as progress:
            task = progress.add_task("measuring the rendered mouth opening", total=len(picks))
            for i in picks:
                camera = dataset.cameras[int(i) : int(i) + 1].to(model.device)
                renders.append(to_uint8(model.get_outputs_for_camera(camera)["rgb"]))
                truths.append(to_uint8(dataset[int(i)]["image"][..., :3]))
                progress.advance(task)
    finally:
        model.telling_true_openings = False
        model.train(was_training)
    return renders, truths


def calibrate_opening_gain(pipeline, count: int = CALIBRATION_FRAMES) -> float | None:
    """Measure and set the model's `opening_gain` from `count` training frames (a data-parallel rank: of its own
    shard; see the module docstring); returns it, or None (the gain left as it was) for a model not told the opening
    or when the tracker reads too few frames."""
    model = pipeline.model
    if getattr(model, "opening_predictor", None) is None:
        return None
    dataset = pipeline.datamanager.train_dataset
    rows = dataset.cameras.metadata["audio_index"].reshape(-1).round().long()
    rows = rows.clamp(0, model.mouth_row_target.shape[0] - 1).to(model.mouth_row_target.device)
    openings = model.mouth_row_target[rows]
    shard = getattr(pipeline.datamanager, "shard", None)
    if shard is not None:  # a data-parallel rank reads only its own shard of the training frames
        own = torch.zeros(len(openings), dtype=torch.bool, device=openings.device)
        own[shard.frame_indices.to(openings.device)] = True
        openings = torch.where(own, openings, torch.full_like(openings, float("nan")))
    picks = calibration_picks(openings, count)
    if len(picks) < MIN_TRACKED_FRAMES:
        return None
    renders, truths = _render_training_frames(model, dataset, picks)
    rendered, truth = mouth_openings(renders, truths, model.device)
    gain = gain_from_openings(rendered, truth)
    if gain is not None:
        model.opening_gain.fill_(gain)
    return gain

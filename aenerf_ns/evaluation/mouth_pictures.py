"""Pictures that show how far a rendered mouth opens: the lip gap over time in pixels, and mouth close-ups.

A mouth that opens a third as far as the speaker's still follows the speech's rhythm, so a plot that scales
each curve on its own hides the failure. Here the truth and the render share one axis in real units: the
inner-lip gap of the face mesh in pixels of the frame scaled to 512 px height (the frame size the papers
report on, as LMD), and the close-up strip puts the render's mouth beside the truth's at the clip's widest
openings, where a timid mouth shows most.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8

from aenerf_ns.evaluation.landmark_distance import MOUTH_LANDMARKS, PAPER_FRAME_HEIGHT
from aenerf_ns.faces.face_tracking import inner_lip_gap
from aenerf_ns.utils.atomic_io import atomic_write_bytes

CLOSEUP_SIZE = 128
"""Side of each mouth close-up in the strip, in pixels."""


def lip_gap_px(landmarks: Float[np.ndarray, "n 468 3"], frame_height: int) -> Float[np.ndarray, "n"]:
    """Inner-lip gap per frame in pixels of the frame scaled to 512 px height (NaN where no landmarks)."""
    return inner_lip_gap(landmarks) * (PAPER_FRAME_HEIGHT / float(frame_height))


def widest_frames(gap: Float[np.ndarray, "n"], count: int, min_spacing: int = 3) -> list[int]:
    """Indices of up to `count` frames with the widest opening, at least `min_spacing` frames apart (in
    time order), so the picks are different syllables rather than neighbours of one."""
    order = [int(i) for i in np.argsort(-np.nan_to_num(gap, nan=-np.inf)) if np.isfinite(gap[i])]
    picks: list[int] = []
    for i in order:
        if all(abs(i - j) >= min_spacing for j in picks):
            picks.append(i)
        if len(picks) == count:
            break
    return sorted(picks)


def mouth_box(landmarks: Float[np.ndarray, "468 3"], height: int, width: int, scale: float = 1.8) -> tuple:
    """(top, bottom, left, right) of a square around the lips, `scale` times the mouth's width, in the image."""
    lips = landmarks[list(MOUTH_LANDMARKS), :2].astype(np.float64)
    centre = lips.mean(0)
    half = max(np.ptp(lips[:, 0]), np.ptp(lips[:, 1]), 4.0) * scale / 2
    left, top = int(round(centre[0] - half)), int(round(centre[1] - half))
    side = max(int(round(2 * half)), 1)
    top = min(max(top, 0), max(height - side, 0))
    left = min(max(left, 0), max(width - side, 0))
    return top, min(top + side, height), left, min(left + side, width)


def _crop(image: UInt8[np.ndarray, "h w 3"], box: tuple) -> UInt8[np.ndarray, "s s 3"]:
    from PIL import Image

    top, bottom, left, right = box
    patch = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    return np.asarray(patch.resize((CLOSEUP_SIZE, CLOSEUP_SIZE), Image.NEAREST))


def mouth_closeup_strip(
    renders: list[UInt8[np.ndarray, "h w 3"]],
    truths: list[UInt8[np.ndarray, "h w 3"]],
    truth_landmarks: Float[np.ndarray, "n 468 3"],
    count: int = 4,
) -> UInt8[np.ndarray, "rows cols 3"] | None:
    """Mouth close-ups at the truth's widest openings: the top row the truth, the bottom row the render,
    each pair cut from the same box around the truth's lips. None when no frame has landmarks."""
    h, w = truths[0].shape[:2]
    picks = widest_frames(lip_gap_px(truth_landmarks, h), count)
    if not picks:
        return None
    boxes = [mouth_box(truth_landmarks[i], h, w) for i in picks]
    gap = np.full((CLOSEUP_SIZE, 4, 3), 255, np.uint8)

    def row(frames: list) -> np.ndarray:
        tiles = [_crop(frames[i], box) for i, box in zip(picks, boxes)]
        return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], 1)

    top, bottom = row(truths), row(renders)
    return np.concatenate([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom], 0)


def plot_lip_gap(
    path: Path,
    times: Float[np.ndarray, "n"],
    series: dict[str, Float[np.ndarray, "n"]],
    envelope: Float[np.ndarray, "n"] | None,
) -> None:
    """Lip gap over time, every series on one axis in pixels at 512 px height, with the speech envelope
    beneath, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if envelope is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.6 * rows), sharex=True, squeeze=False)
    for name, values in series.items():
        axes[0, 0].plot(times, values, label=name, linewidth=1.4)
    axes[0, 0].set_ylabel("lip gap (px at 512 px)")
    axes[0, 0].set_ylim(bottom=0)
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

"""Mouth opening read from pictures alone, so that any method's renders can be scored for lip motion.

Methods without a parsing branch (nerfstudio's nerfacto and dnerf) give no mouth mask, so the benchmark
measures every method the same way: the face mesh finds the inner-lip landmarks in the rendered frame,
inside the face region tracked on the matching ground-truth frame (a blurry render need not be detectable
on its own), and the opening is the inner-lip gap divided by the distance between the outer eye corners.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, UInt8

from aenerf_ns.faces.face_tracking import (
    LEFT_EYE_OUTER,
    MESH_PRESENCE,
    RIGHT_EYE_OUTER,
    Roi,
    detect_faces,
    face_mesh,
    roi_from_landmarks,
    track_faces,
)

UPPER_INNER_LIP = 13
"""Face-mesh landmark in the middle of the upper lip's inner edge."""
LOWER_INNER_LIP = 14
"""Face-mesh landmark in the middle of the lower lip's inner edge."""
NOSE_TIP = 1
"""Face-mesh landmark at the tip of the nose: landmarks above it do not move with speech."""


def _rotate(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.concatenate([c * v[:, :1] - s * v[:, 1:], s * v[:, :1] + c * v[:, 1:]], -1)


def steady_regions(landmarks: Float[np.ndarray, "n 468 3"]) -> list[Roi]:
    """Face regions placed by the upper face alone (see the module docstring), one per frame."""
    xy = landmarks[..., :2].astype(np.float64)
    eye_vec = xy[:, LEFT_EYE_OUTER] - xy[:, RIGHT_EYE_OUTER]
    angle = np.arctan2(eye_vec[:, 1], eye_vec[:, 0])
    eyes = np.linalg.norm(eye_vec, axis=-1)
    upright = np.stack([_rotate(f - f.mean(0), -angle[i : i + 1].repeat(len(f))) for i, f in enumerate(xy)])
    median_face = np.median(upright, 0)
    upper = median_face[:, 1] < median_face[NOSE_TIP, 1]  # image y points down
    anchor = xy[:, upper].mean(1)
    usual = [roi_from_landmarks(f) for f in landmarks]
    size = np.median([r.size for r in usual] / eyes)
    shift = np.median(_rotate(np.array([[r.cx, r.cy] for r in usual]) - anchor, -angle) / eyes[:, None], 0)
    centre = anchor + _rotate(np.tile(shift, (len(xy), 1)), angle) * eyes[:, None]
    return [Roi(float(c[0]), float(c[1]), float(size * d), float(a)) for c, d, a in zip(centre, eyes, angle)]


def _opening(landmarks: Float[np.ndarray, "n 468 3"]) -> Float[np.ndarray, "n"]:
    xy = landmarks[..., :2]
    gap = np.linalg.norm(xy[:, UPPER_INNER_LIP] - xy[:, LOWER_INNER_LIP], axis=-1)
    eyes = np.linalg.norm(xy[:, LEFT_EYE_OUTER] - xy[:, RIGHT_EYE_OUTER], axis=-1)
    return gap / np.maximum(eyes, 1e-6)


def mouth_openings(
    renders: list[UInt8[np.ndarray, "h w 3"]], references: list[UInt8[np.ndarray, "h w 3"]], device: str = "cpu"
) -> tuple[Float[np.ndarray, "n"], Float[np.ndarray, "n"]]:
    """(rendered, reference) mouth opening per frame, in eye-distance units; NaN where no face was found
    in the reference frame.

    `references` are the ground-truth frames in time order; `renders[i]` and `references[i]` are both
    measured inside the steady face region of `references[i]`.
    """
    if len(renders) != len(references):
        raise ValueError(f"{len(renders)} renders but {len(references)} reference frames")
    n = len(references)
    tracked, presence = track_faces(references, detect_faces(references, device), device, keyframe_every=1)
    render_open, reference_open = np.full(n, np.nan), np.full(n, np.nan)
    found = [i for i in range(n) if presence[i] >= MESH_PRESENCE]
    if found:
        rois = steady_regions(tracked[found])  # both measured in the same regions
        lm, prob = face_mesh([references[i] for i in found], rois, device)
        reference_open[found] = np.where(prob >= MESH_PRESENCE, _opening(lm), np.nan)
        # a blurry render may not look like a face to the mesh model; its lips are still read, so every
        # method gets a figure and a poor render shows as poor agreement rather than as a gap
        lm, _ = face_mesh([renders[i] for i in found], rois, device)
        render_open[found] = _opening(lm)
    return render_open, reference_open


def opening_agreement(rendered: Float[np.ndarray, "n"], reference: Float[np.ndarray, "n"]) -> dict:
    """How a rendered opening track follows the reference over the frames where both exist.

    correlation: do they move together; motion_ratio: the rendered track's spread over the reference's
    (a mouth that barely moves has a small ratio, and over short clips its small wiggles can correlate
    by chance, so read the two together); mean_abs_error in eye-distance units.
    """
    both = np.isfinite(rendered) & np.isfinite(reference)
    a, b = rendered[both], reference[both]
    spread = both.sum() >= 3 and a.std() > 1e-9 and b.std() > 1e-9
    return {
        "correlation": float(np.corrcoef(a, b)[0, 1]) if spread else float("nan"),
        "motion_ratio": float(a.std() / b.std()) if both.sum() >= 3 and b.std() > 1e-9 else float("nan"),
        "mean_abs_error": float(np.abs(a - b).mean()) if both.any() else float("nan"),
        "frames": int(both.sum()),
    }

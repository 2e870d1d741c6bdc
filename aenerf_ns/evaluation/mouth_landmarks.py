"""Face landmarks read from pictures alone, so that any method's renders can be scored for lip motion.

Methods without a parsing branch (nerfstudio's nerfacto and dnerf) give no mouth mask, so every method is
measured the same way: the face mesh finds the landmarks of the rendered frame inside the face region
tracked on the matching reference frame (the ground truth, or the training frame of the same pose; a
blurry render need not be detectable on its own). The landmark distance (`landmark_distance`), the mouth
opening (the inner-lip gap divided by the distance between the outer eye corners), the weight-free sync
measure and SyncNet's mouth crop are all read from these landmarks.
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
    lip_gap_ratio,
    roi_from_landmarks,
    track_faces,
)

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


def mouth_opening(landmarks: Float[np.ndarray, "n 468 3"]) -> Float[np.ndarray, "n"]:
    """Inner-lip gap over the outer-eye-corner distance, per frame (NaN where the landmarks are NaN)."""
    return lip_gap_ratio(landmarks)


def paired_landmarks(
    renders: list[UInt8[np.ndarray, "h w 3"]], references: list[UInt8[np.ndarray, "h w 3"]], device: str = "cpu"
) -> tuple[Float[np.ndarray, "n 468 3"], Float[np.ndarray, "n 468 3"]]:
    """(rendered, reference) face-mesh landmarks per frame in pixels; NaN where no face was found in the
    reference frame.

    `references` are frames in time order; `renders[i]` and `references[i]` are both measured inside the
    steady face region of `references[i]`.
    """
    if len(renders) != len(references):
        raise ValueError(f"{len(renders)} renders but {len(references)} reference frames")
    n = len(references)
    tracked, presence = track_faces(references, detect_faces(references, device), device, keyframe_every=1)
    render_lm, reference_lm = np.full((n, 468, 3), np.nan), np.full((n, 468, 3), np.nan)
    found = [i for i in range(n) if presence[i] >= MESH_PRESENCE]
    if found:
        rois = steady_regions(tracked[found])  # both measured in the same regions
        lm, prob = face_mesh([references[i] for i in found], rois, device)
        lm[prob < MESH_PRESENCE] = np.nan
        reference_lm[found] = lm
        # a blurry render may not look like a face to the mesh model; its lips are still read, so every
        # method gets a figure and a poor render shows as poor agreement rather than as a gap
        lm, _ = face_mesh([renders[i] for i in found], rois, device)
        render_lm[found] = np.where(np.isnan(reference_lm[found]), np.nan, lm)
    return render_lm, reference_lm


def mouth_openings(
    renders: list[UInt8[np.ndarray, "h w 3"]], references: list[UInt8[np.ndarray, "h w 3"]], device: str = "cpu"
) -> tuple[Float[np.ndarray, "n"], Float[np.ndarray, "n"]]:
    """(rendered, reference) mouth opening per frame, in eye-distance units; NaN where no face was found
    in the reference frame (see `paired_landmarks`)."""
    render_lm, reference_lm = paired_landmarks(renders, references, device)
    return mouth_opening(render_lm), mouth_opening(reference_lm)


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

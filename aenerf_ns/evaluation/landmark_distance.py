"""Landmark distance (LMD): how far the rendered mouth's landmarks lie from the ground truth's.

LMD (Chen et al. 2018, as AE-NeRF and its peers report it) is the mean Euclidean distance between
corresponding mouth landmarks of each rendered frame and its ground-truth frame, averaged over landmarks
and frames. Here the landmarks are the 40 lip points of the bundled face mesh (outer and inner lip
contours; the papers' dlib model has 20), both frames read inside the same face region
(`mouth_landmarks.paired_landmarks`), with no alignment between them: render and ground truth share the
camera, so a mouth in the wrong place is an error.

`lmd` is in pixels of the frame scaled to 512 px height, the frame size the papers report on (AD-NeRF and
DFRF clips), so figures of runs at other resolutions compare; `lmd_eye_units` divides each frame's
distances by the ground truth's outer-eye-corner distance instead, which does not depend on how much of
the picture the face fills.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from aenerf_ns.faces.face_tracking import INNER_LIPS, LEFT_EYE_OUTER, OUTER_LIPS, RIGHT_EYE_OUTER

MOUTH_LANDMARKS = OUTER_LIPS + INNER_LIPS
"""Face-mesh indices LMD compares: the outer then the inner lip contour."""
PAPER_FRAME_HEIGHT = 512
"""Frame height (pixels) `lmd` is expressed at."""


def landmark_distance(
    rendered: Float[np.ndarray, "n 468 3"], reference: Float[np.ndarray, "n 468 3"], frame_height: int
) -> dict:
    """LMD of rendered against reference landmarks (pixels of `frame_height`-tall frames), over the frames
    where both exist: `lmd` (pixels at 512 px height), `lmd_eye_units` and the number of frames."""
    if rendered.shape != reference.shape:
        raise ValueError(f"landmark arrays differ in shape: {rendered.shape} vs {reference.shape}")
    mouth_r = rendered[:, MOUTH_LANDMARKS, :2].astype(np.float64)
    mouth_t = reference[:, MOUTH_LANDMARKS, :2].astype(np.float64)
    both = np.isfinite(mouth_r).all((1, 2)) & np.isfinite(mouth_t).all((1, 2))
    if not both.any():
        return {"lmd": float("nan"), "lmd_eye_units": float("nan"), "frames": 0}
    per_frame = np.linalg.norm(mouth_r[both] - mouth_t[both], axis=-1).mean(-1)
    eyes = np.linalg.norm(reference[both, LEFT_EYE_OUTER, :2] - reference[both, RIGHT_EYE_OUTER, :2], axis=-1)
    return {
        "lmd": float(per_frame.mean() * PAPER_FRAME_HEIGHT / frame_height),
        "lmd_eye_units": float((per_frame / np.maximum(eyes, 1e-6)).mean()),
        "frames": int(both.sum()),
    }

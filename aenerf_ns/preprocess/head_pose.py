"""Head pose per frame from face-mesh landmarks, as nerfstudio camera-to-world transforms in head coordinates.

No generic 3D face model is needed: the mesh model predicts depth for every landmark, so the person's own
canonical face is the mean of all frames' meshes after rigid alignment (generalised Procrustes). Pose is
then solved against that shape with perspective PnP on the landmarks that move rigidly with the skull
(found from the data: the least-varying ones after alignment, which leaves out lips, jaw and eyelids),
smoothed over time and turned into the dataset's convention: the head fixed at the origin, the camera
moving around it (see `dataset_format`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from jaxtyping import Bool, Float
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from aenerf_ns.faces.face_tracking import CHIN, FOREHEAD, LEFT_EYE_OUTER, RIGHT_EYE_OUTER

FACE_HEIGHT_UNITS = 1.45
"""Forehead-to-chin landmark distance in head units (one unit is about half the head height)."""
HEAD_CENTRE_FROM_EYES = (0.0, -0.15, -0.75)
"""Head centre relative to the midpoint of the outer eye corners, in head units (x right, y up, z forward)."""
RIGID_FRACTION = 0.6
"""Share of landmarks, the least deforming ones, that the pose is solved on."""
_OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])


class PoseError(ValueError):
    """Head pose cannot be recovered from the landmarks; the message says why."""


def _to_model_space(landmarks: np.ndarray) -> np.ndarray:
    """Image landmarks (x right, y down, z away from the camera) to a right-handed frame: y up, z toward the camera."""
    return landmarks * np.array([1.0, -1.0, -1.0], dtype=landmarks.dtype)


def similarity_align(
    source: Float[np.ndarray, "n 3"], target: Float[np.ndarray, "n 3"]
) -> tuple[float, Float[np.ndarray, "3 3"], Float[np.ndarray, "3"]]:
    """Scale, rotation and translation with target ~ s * R @ source + t in least squares (Umeyama)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / max((a**2).sum(), 1e-12))
    return scale, rot, mu_t - scale * rot @ mu_s


@dataclass
class CanonicalFace:
    """The person's mean face mesh in head coordinates, and which landmarks move rigidly with the head."""

    points: Float[np.ndarray, "468 3"]
    """Landmark positions in head units (x to the person's left as seen by the camera, y up, z out of the face)."""
    rigid: Bool[np.ndarray, "468"]
    """Landmarks used for pose solving."""


def canonical_face(landmarks: Float[np.ndarray, "frames 468 3"], iterations: int = 4) -> CanonicalFace:
    """Mean shape of the tracked frames (generalised Procrustes), in the head coordinate convention."""
    if len(landmarks) < 2:
        raise PoseError("need at least two tracked frames to build the person's face shape")
    shapes = _to_model_space(landmarks.astype(np.float64))
    mean = shapes[len(shapes) // 2]
    rigid = np.ones(shapes.shape[1], bool)
    for it in range(iterations):
        aligned = np.empty_like(shapes)
        for i, shape in enumerate(shapes):
            s, r, t = similarity_align(shape[rigid], mean[rigid])
            aligned[i] = s * shape @ r.T + t
        mean = aligned.mean(0)
        if it == 0:  # after a first alignment, keep the landmarks that vary least across frames
            spread = np.linalg.norm(aligned - mean, axis=-1).mean(0)
            rigid = spread <= np.quantile(spread, RIGID_FRACTION)

    # Head axes: x from the right to the left outer eye corner, y from chin toward forehead, z out of the face.
    x = mean[LEFT_EYE_OUTER] - mean[RIGHT_EYE_OUTER]
    x /= np.linalg.norm(x)
    up = mean[FOREHEAD] - mean[CHIN]
    y = up - (up @ x) * x
    y /= np.linalg.norm(y)
    axes = np.stack([x, y, np.cross(x, y)])  # rows: head axes in model space
    scale = FACE_HEIGHT_UNITS / np.linalg.norm(up)
    eyes = (mean[LEFT_EYE_OUTER] + mean[RIGHT_EYE_OUTER]) / 2
    points = (mean - eyes) @ axes.T * scale - np.asarray(HEAD_CENTRE_FROM_EYES)
    return CanonicalFace(points, rigid)


@dataclass
class HeadTrack:
    """Per-frame head pose in camera coordinates and the camera it was solved with."""

    rotations: Float[np.ndarray, "frames 3 3"]
    """Head-to-camera rotation (OpenCV camera axes: x right, y down, z forward)."""
    translations: Float[np.ndarray, "frames 3"]
    """Head centre in camera coordinates, head units."""
    focal: float
    """Focal length in pixels."""
    cx: float
    """Principal point x in pixels."""
    cy: float
    """Principal point y in pixels."""
    pnp_failed: list[int] = field(default_factory=list)
    """Frames where PnP did not converge and the weak-perspective estimate was kept."""

    def camera_to_head(self) -> Float[np.ndarray, "frames 4 4"]:
        """Camera-to-world transforms with the head as the world, OpenGL camera axes (nerfstudio)."""
        n = len(self.rotations)
        head_to_cam = np.tile(np.eye(4), (n, 1, 1))
        head_to_cam[:, :3, :3] = self.rotations
        head_to_cam[:, :3, 3] = self.translations
        c2w = np.linalg.inv(head_to_cam)
        c2w[:, :3, :3] = c2w[:, :3, :3] @ _OPENGL_FROM_OPENCV
        return c2w

    def angles_deg(self) -> Float[np.ndarray, "frames 3"]:
        """Head pitch, yaw and roll in degrees, relative to looking straight into the camera."""
        in_gl = np.einsum("ij,njk->nik", _OPENGL_FROM_OPENCV, self.rotations)
        return Rotation.from_matrix(in_gl).as_euler("xyz", degrees=True)

    def project(self, points: Float[np.ndarray, "p 3"]) -> Float[np.ndarray, "frames p 2"]:
        """Pixel positions of head-coordinate points in every frame."""
        cam = np.einsum("nij,pj->npi", self.rotations, points) + self.translations[:, None]
        return np.stack(
            [self.focal * cam[..., 0] / cam[..., 2] + self.cx, self.focal * cam[..., 1] / cam[..., 2] + self.cy], -1
        )


def solve_head_track(
    landmarks: Float[np.ndarray, "frames 468 3"],
    face: CanonicalFace,
    cx: float,
    cy: float,
    focal: float | None = None,
    camera_distance: float = 6.0,
    smoothing_sigma: float = 1.0,
) -> HeadTrack:
    """Perspective head pose for every frame (all frames must hold landmarks; interpolate gaps first).

    Args:
        landmarks: mesh landmarks in pixels of the output images.
        face: the person's canonical face.
        cx, cy: principal point in pixels.
        focal: focal length in pixels; None picks the focal that puts the camera `camera_distance` head
            units from the head on average (the true focal of a cropped clip is rarely known; the scene
            is then simply scaled so near/far bounds fit).
        smoothing_sigma: Gaussian smoothing of the pose over time, in frames (0: none).
    """
    if not np.all(np.isfinite(landmarks)):
        raise PoseError("landmarks contain NaN: interpolate or drop untracked frames before solving poses")
    model = _to_model_space(landmarks.astype(np.float64))
    rigid = face.rigid
    weak = [similarity_align(face.points[rigid], m[rigid]) for m in model]
    scales = np.array([s for s, _, _ in weak])
    if focal is None:
        focal = float(camera_distance * np.median(scales))
    rotations, translations, failed = [], [], []
    image_points = np.ascontiguousarray(landmarks[:, rigid, :2], dtype=np.float64)
    object_points = np.ascontiguousarray(face.points[rigid], dtype=np.float64)
    camera = np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1]], dtype=np.float64)
    for (s, r, t), pts in zip(weak, image_points):
        r_cv = _OPENGL_FROM_OPENCV @ r  # model space is OpenGL-like: flip y and z for OpenCV
        depth = focal / s
        u0, v0 = t[0], -t[1]  # pixel position of the head centre under the weak-perspective fit
        guess_t = np.array([(u0 - cx) * depth / focal, (v0 - cy) * depth / focal, depth])
        rvec, _ = cv2.Rodrigues(r_cv)
        ok, rvec, tvec = cv2.solvePnP(
            object_points,
            pts,
            camera,
            None,
            rvec,
            guess_t.reshape(3, 1),
            useExtrinsicGuess=True,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not ok:
            rvec, tvec = cv2.Rodrigues(r_cv)[0], guess_t.reshape(3, 1)
            failed.append(len(rotations))
        rotations.append(cv2.Rodrigues(rvec)[0])
        translations.append(tvec.reshape(3))
    raw = HeadTrack(np.array(rotations), np.array(translations), focal, cx, cy, failed)
    if smoothing_sigma <= 0 or len(rotations) < 2:
        return raw
    return _smooth_track(raw, face, landmarks, smoothing_sigma)


def _smooth_track(
    raw: HeadTrack, face: CanonicalFace, landmarks: Float[np.ndarray, "frames 468 3"], sigma: float
) -> HeadTrack:
    """`raw` smoothed over time, except in frames where smoothing pulls the face over a pixel off its landmarks.

    Smoothing removes landmark jitter but would lag behind a quick real head movement; those frames keep
    their own pose.
    """
    smooth = HeadTrack(*smooth_poses(raw.rotations, raw.translations, sigma), raw.focal, raw.cx, raw.cy, raw.pnp_failed)
    lag = reprojection_errors(smooth, face, landmarks)["rigid"] - reprojection_errors(raw, face, landmarks)["rigid"]
    keep_raw = lag > 1.0
    smooth.rotations[keep_raw] = raw.rotations[keep_raw]
    smooth.translations[keep_raw] = raw.translations[keep_raw]
    return smooth


def smooth_poses(rotations: np.ndarray, translations: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian smoothing over time of rotations (as rotation vectors about their mean) and translations."""
    rot = Rotation.from_matrix(rotations)
    mean = rot.mean()
    rotvec = (mean.inv() * rot).as_rotvec()
    rotvec = gaussian_filter1d(rotvec, sigma, axis=0, mode="nearest")
    smoothed = (mean * Rotation.from_rotvec(rotvec)).as_matrix()
    return smoothed, gaussian_filter1d(translations, sigma, axis=0, mode="nearest")


def reprojection_errors(track: HeadTrack, face: CanonicalFace, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame mean pixel distance between the posed canonical landmarks and the detected ones."""
    projected = track.project(face.points)
    dist = np.linalg.norm(projected - landmarks[..., :2], axis=-1)
    return {"rigid": dist[:, face.rigid].mean(1), "all": dist.mean(1)}


def fill_gaps(
    values: Float[np.ndarray, "frames ..."], valid: Bool[np.ndarray, "frames"], max_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate runs of invalid frames no longer than `max_gap` between valid neighbours.

    Returns the filled values and the mask of frames that are still missing (long gaps, or missing at an
    end of the clip beyond `max_gap`, which are filled by holding the nearest valid frame).
    """
    values = values.copy()
    valid = valid.copy()
    n = len(valid)
    missing = np.zeros(n, bool)
    good = np.flatnonzero(valid)
    if len(good) == 0:
        return values, ~valid
    i = 0
    while i < n:
        if valid[i]:
            i += 1
            continue
        j = i
        while j < n and not valid[j]:
            j += 1
        length = j - i
        if i == 0 or j == n:  # an end of the clip: hold the nearest valid frame
            values[i:j] = values[j if i == 0 else i - 1]
        else:
            w = (np.arange(1, length + 1) / (length + 1)).reshape(-1, *([1] * (values.ndim - 1)))
            values[i:j] = (1 - w) * values[i - 1] + w * values[j]
        if length > max_gap:
            missing[i:j] = True
        i = j
    return values, missing

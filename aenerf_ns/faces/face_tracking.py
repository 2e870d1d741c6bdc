"""Face detection, 468-point face mesh and person segmentation on video frames, offline and batched.

The three bundled models (see `face_models/README.md`) run through `tflite_graph.TFLiteGraph`. The
pipeline per frame follows the usual mesh-tracking recipe: a BlazeFace detection gives a rotated square
region around the face, the mesh model runs on that region, and a second pass re-crops from the first
pass's landmarks (tighter and better aligned than the detector's box). All passes run on whole batches,
so there is no frame-to-frame dependency and a batch of frames costs little more than one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
from jaxtyping import Float

from aenerf_ns.faces.tflite_graph import TFLiteGraph

MODEL_DIR = Path(__file__).parent / "face_models"
"""Folder of the bundled face models."""
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
"""Mesh indices of the outer eye corners (the subject's right eye appears on the image's left)."""
FOREHEAD, CHIN, NOSE_TIP, SUBNASALE = 10, 152, 1, 2
"""Mesh indices of the top of the forehead, the chin, the nose tip and the point under the nose."""
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
"""Mesh indices of the inner lip midpoints (their distance is the mouth opening)."""
FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
"""Mesh indices along the face outline, in order."""
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
"""Mesh indices along the inner lip contour (the mouth opening), in order."""
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
"""Mesh indices along the outer lip contour, in order."""

DETECTION_SCORE = 0.5
"""Minimum detector confidence for a face."""
MESH_PRESENCE = 0.5
"""Minimum mesh-model face-presence probability for a frame to count as tracked."""


class FaceModelError(RuntimeError):
    """A bundled face model is missing or damaged."""


def inner_lip_gap(landmarks: Float[np.ndarray, "n 468 3"]) -> Float[np.ndarray, "n"]:
    """Distance between the inner lip midpoints of each frame's mesh, in the landmarks' units (NaN where they are)."""
    xy = np.asarray(landmarks, dtype=np.float64)[..., :2]
    return np.linalg.norm(xy[:, UPPER_LIP_INNER] - xy[:, LOWER_LIP_INNER], axis=-1)


def lip_gap_ratio(landmarks: Float[np.ndarray, "n 468 3"]) -> Float[np.ndarray, "n"]:
    """The mouth opening of each frame's mesh: inner-lip gap over the outer-eye-corner distance, so it depends
    neither on the image size nor on how much of it the face fills (NaN where the landmarks are NaN)."""
    xy = np.asarray(landmarks)[..., :2]
    eyes = np.linalg.norm(xy[:, LEFT_EYE_OUTER] - xy[:, RIGHT_EYE_OUTER], axis=-1)
    return inner_lip_gap(landmarks) / np.maximum(eyes, 1e-6)


@cache
def load_face_model(name: str) -> TFLiteGraph:
    """One of the bundled models (`face_detection_short_range`, `face_landmark`, `selfie_segmentation`)."""
    path = MODEL_DIR / f"{name}.tflite"
    if not path.is_file():
        raise FaceModelError(f"bundled face model {path} is missing: reinstall aenerf_ns (pip install -e .)")
    return TFLiteGraph(path).eval()


@dataclass
class Detections:
    """Faces found by the detector in one image, best first, in image pixels."""

    boxes: Float[np.ndarray, "n 4"]
    """x0, y0, x1, y1."""
    keypoints: Float[np.ndarray, "n 6 2"]
    """Right eye, left eye, nose tip, mouth, right ear, left ear."""
    scores: Float[np.ndarray, "n"]
    """Detector confidence."""

    def __len__(self) -> int:
        return len(self.scores)


def _blazeface_anchors() -> Float[np.ndarray, "896 2"]:
    """Anchor centres of the short-range detector: a 16x16 grid with 2 anchors and an 8x8 grid with 6."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], -1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


_ANCHORS = _blazeface_anchors()


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def _weighted_nms(boxes, keypoints, scores, iou_threshold: float = 0.3) -> Detections:
    """Blend overlapping detections weighted by score (BlazeFace's suppression), best first."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out_b, out_k, out_s = [], [], []
    remaining = np.arange(len(scores))
    while len(remaining):
        overlap = _iou(boxes[remaining[0]], boxes[remaining]) > iou_threshold
        group = remaining[overlap]
        w = scores[group][:, None]
        out_b.append((boxes[group] * w).sum(0) / w.sum())
        out_k.append((keypoints[group] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[group[0]])
        remaining = remaining[~overlap]
    if not out_s:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32))
    return Detections(np.stack(out_b), np.stack(out_k), np.asarray(out_s, np.float32))


def _letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Pad to a square, resize to `size`; returns the image and (scale, pad_x, pad_y) to map back."""
    h, w = image.shape[:2]
    side = max(h, w)
    pad_x, pad_y = (side - w) / 2, (side - h) / 2
    square = cv2.copyMakeBorder(
        image, int(pad_y), side - h - int(pad_y), int(pad_x), side - w - int(pad_x), cv2.BORDER_CONSTANT, value=0
    )
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp), side / size, int(pad_x), int(pad_y)


@torch.inference_mode()
def detect_faces(images: list[np.ndarray], device: str = "cpu") -> list[Detections]:
    """Faces in each RGB uint8 image (any size; letterboxed to the detector's 128x128 input)."""
    model = load_face_model("face_detection_short_range").to(device)
    batch, maps = [], []
    for img in images:
        small, scale, px, py = _letterbox(img, 128)
        batch.append(small)
        maps.append((scale, px, py))
    x = torch.from_numpy(np.stack(batch)).to(device).float() / 127.5 - 1.0
    raw_boxes, raw_scores = (t.cpu().numpy() for t in model(x))
    results = []
    for raw, logits, (scale, px, py) in zip(raw_boxes, raw_scores, maps):
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0], -80.0, 80.0)))
        keep = scores > DETECTION_SCORE
        raw, scores, anchors = raw[keep] / 128.0, scores[keep], _ANCHORS[keep]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], -1) * 128 * scale - [px, py, px, py]
        kps = (raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]) * 128 * scale - [px, py]
        results.append(_weighted_nms(boxes.astype(np.float32), kps.astype(np.float32), scores))
    return results


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


@dataclass
class Roi:
    """A rotated square region of an image: centre, side length and rotation (radians, counter-clockwise)."""

    cx: float
    cy: float
    size: float
    angle: float

    def to_crop(self, out: int) -> np.ndarray:
        """2x3 affine matrix from image pixels to the `out` x `out` crop."""
        # Rotate the image by -angle about the centre (so the face is upright), then scale and shift.
        m = _rotation(-self.angle) * (out / self.size)
        t = np.array([out / 2, out / 2]) - m @ np.array([self.cx, self.cy])
        return np.concatenate([m, t[:, None]], 1).astype(np.float32)


def _roi(points_xy: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray, scale: float) -> Roi:
    """Square region around `points_xy`, rotated so the eyes are level, `scale` times their extent."""
    angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])  # image y points down
    centre = (points_xy.min(0) + points_xy.max(0)) / 2
    rel = (points_xy - centre) @ _rotation(-angle).T  # coordinates in the upright frame
    lo, hi = rel.min(0), rel.max(0)
    centre = centre + _rotation(angle) @ ((lo + hi) / 2)
    return Roi(float(centre[0]), float(centre[1]), float(max(hi - lo) * scale), float(angle))


def roi_from_detection(det: Detections, index: int = 0) -> Roi:
    """The mesh model's input region for one detection: eye-levelled square 1.5 times the box."""
    x0, y0, x1, y1 = det.boxes[index]
    corners = np.array([[x0, y0], [x1, y1]])
    return _roi(corners, det.keypoints[index, 0], det.keypoints[index, 1], 1.5)


def roi_from_landmarks(landmarks: np.ndarray) -> Roi:
    """The mesh model's input region from a previous mesh: eye-levelled square 1.5 times its extent."""
    xy = landmarks[:, :2]
    return _roi(xy, xy[RIGHT_EYE_OUTER], xy[LEFT_EYE_OUTER], 1.5)


@torch.inference_mode()
def face_mesh(
    images: list[np.ndarray], rois: list[Roi], device: str = "cpu"
) -> tuple[Float[np.ndarray, "n 468 3"], Float[np.ndarray, "n"]]:
    """468 landmarks per image (x, y in image pixels; z relative depth in pixels, smaller is nearer) and
    the model's face-presence probability, for the face inside each region."""
    model = load_face_model("face_landmark").to(device)
    crops, inverse = [], []
    for img, roi in zip(images, rois):
        m = roi.to_crop(192)
        crops.append(cv2.warpAffine(img, m, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
        inverse.append((cv2.invertAffineTransform(m), roi.size / 192))
    x = torch.from_numpy(np.stack(crops)).to(device).float() / 255.0
    raw, presence = (t.cpu().numpy() for t in model(x))
    raw = raw.reshape(len(images), 468, 3)
    out = np.empty_like(raw)
    for i, (inv, zscale) in enumerate(inverse):
        out[i, :, :2] = raw[i, :, :2] @ inv[:, :2].T + inv[:, 2]
        out[i, :, 2] = raw[i, :, 2] * zscale
    prob = 1.0 / (1.0 + np.exp(-presence.reshape(-1)))
    return out.astype(np.float32), prob.astype(np.float32)


@torch.inference_mode()
def person_masks(images: list[np.ndarray], device: str = "cpu") -> Float[np.ndarray, "n 256 256"]:
    """Probability that each pixel shows the person (not background), at 256x256 over the whole image."""
    model = load_face_model("selfie_segmentation").to(device)
    batch = [cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA) for img in images]
    x = torch.from_numpy(np.stack(batch)).to(device).float() / 255.0
    return model(x)[0][..., 0].cpu().numpy()


def track_faces(
    images: list[np.ndarray], detections: list[Detections], device: str = "cpu", keyframe_every: int = 4
) -> tuple[Float[np.ndarray, "n 468 3"], Float[np.ndarray, "n"]]:
    """Mesh landmarks for the main (first) detected face of each image, refined by a second pass.

    `images` are consecutive video frames (for single images use keyframe_every=1). Images without a
    detection get NaN landmarks and presence 0.
    """
    n = len(images)
    landmarks = np.full((n, 468, 3), np.nan, np.float32)
    presence = np.zeros(n, np.float32)
    idx = [i for i in range(n) if len(detections[i])]
    if not idx:
        return landmarks, presence
    sub = [images[i] for i in idx]
    # First pass on every `keyframe_every`-th frame only: a head moves little in a few frames, so the
    # other frames' regions are interpolated between keyframes. Frames the second pass then loses
    # get a first pass of their own.
    keys = sorted({*range(0, len(sub), keyframe_every), len(sub) - 1})
    own = [roi_from_detection(detections[i]) for i in idx]
    first, _ = face_mesh([sub[k] for k in keys], [own[k] for k in keys], device)
    key_rois = np.array([[r.cx, r.cy, r.size, r.angle] for r in map(roi_from_landmarks, first)])
    params = np.stack([np.interp(np.arange(len(sub)), keys, key_rois[:, c]) for c in range(4)], -1)
    second, prob = face_mesh(sub, [Roi(*p) for p in params], device)
    lost = [  # lost by the second pass, or the interpolated region disagrees with the frame's own detection
        k
        for k in range(len(sub))
        if k not in keys
        and (
            prob[k] < MESH_PRESENCE
            or math.hypot(params[k, 0] - own[k].cx, params[k, 1] - own[k].cy) > 0.2 * own[k].size
            or not 0.75 < params[k, 2] / own[k].size < 1.33
        )
    ]
    if lost:
        retry, _ = face_mesh([sub[k] for k in lost], [own[k] for k in lost], device)
        second[lost], prob[lost] = face_mesh([sub[k] for k in lost], [roi_from_landmarks(lm) for lm in retry], device)
    landmarks[idx] = second
    presence[idx] = prob
    return landmarks, presence

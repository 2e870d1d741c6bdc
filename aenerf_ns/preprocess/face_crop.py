"""The one square crop of the source frames that every dataset frame is cut from, and the face checks behind it.

A static camera must keep static intrinsics, so the crop is fixed for the whole clip; the head's own motion
is what the poses describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Float, UInt8

from aenerf_ns.faces.face_tracking import Detections
from aenerf_ns.preprocess.process_config import ProcessConfig, ProcessError


@dataclass
class CropBox:
    """The fixed square crop of the source frames."""

    x0: int
    """Left edge in source pixels."""
    y0: int
    """Top edge in source pixels."""
    side: int
    """Side in source pixels."""

    def apply(self, image: UInt8[np.ndarray, "h w 3"], resolution: int) -> UInt8[np.ndarray, "r r 3"]:
        """The crop of `image`, resized to `resolution` pixels square."""
        crop = image[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]
        interp = cv2.INTER_AREA if self.side > resolution else cv2.INTER_CUBIC
        return cv2.resize(crop, (resolution, resolution), interpolation=interp)


@dataclass
class MainFaces:
    """The main face per resampled frame (NaN where none was found) and the crop chosen from them."""

    boxes: Float[np.ndarray, "frames 4"]
    """x0, y0, x1, y1 in source pixels."""
    keypoints: Float[np.ndarray, "frames 6 2"]
    """The detector's six keypoints in source pixels."""
    crop: CropBox
    """The crop for the whole clip."""

    def in_crop(self, idx: list[int], resolution: int) -> list[Detections]:
        """The main face of frames `idx`, moved into output-crop pixels."""
        out = []
        offset = np.array([self.crop.x0, self.crop.y0], np.float32)
        scale = resolution / self.crop.side
        for i in idx:
            box, kp = self.boxes[i], self.keypoints[i]
            if np.isfinite(box).all():
                b = ((box.reshape(2, 2) - offset) * scale).reshape(1, 4)
                out.append(Detections(b, ((kp - offset) * scale)[None], np.ones(1, np.float32)))
            else:
                out.append(Detections(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0)))
        return out


def check_faces(detections: list[Detections], path: Path) -> None:
    """Refuse clips without one clearly visible face in most frames."""
    found = np.array([len(d) > 0 for d in detections])
    if not found.any():
        raise ProcessError(
            f"no face found in {path}: the video needs one person facing the camera, with the face clearly "
            "visible (not too small, dark or turned away)"
        )
    if found.mean() < 0.5:
        raise ProcessError(
            f"a face was found in only {100 * found.mean():.0f}% of the frames of {path}: "
            "trim the video to the part where the person faces the camera"
        )
    several = 0
    for d in detections:
        if len(d) > 1:
            areas = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
            several += int(areas[1] > 0.25 * areas[0])
    if several > 0.05 * len(detections):
        raise ProcessError(
            f"several faces are visible in {several} of {len(detections)} frames of {path}: "
            "a talking-head dataset needs exactly one person; crop the video to that person first"
        )


def choose_crop(detections: list[Detections], width: int, height: int, config: ProcessConfig) -> CropBox:
    """One square crop for the whole clip, from the median face box, kept inside the frame."""
    boxes = np.array([d.boxes[0] for d in detections if len(d)])
    face_h = float(np.median(boxes[:, 3] - boxes[:, 1]))
    if face_h < config.min_face_px:
        raise ProcessError(
            f"the face is only {face_h:.0f} pixels tall (need at least {config.min_face_px}): "
            "film closer to the face or at a higher resolution"
        )
    cx = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
    cy = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2)) + 0.15 * face_h * config.crop_scale / 2.6
    side = int(min(round(config.crop_scale * face_h), width, height))
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return CropBox(x0, y0, side)


def main_faces(detections: list[Detections], crop: CropBox) -> MainFaces:
    """Each frame's best face as fixed-size arrays (NaN where none), with the clip's crop."""
    boxes = np.array([d.boxes[0] if len(d) else np.full(4, np.nan) for d in detections], np.float32)
    kps = np.array([d.keypoints[0] if len(d) else np.full((6, 2), np.nan) for d in detections], np.float32)
    return MainFaces(boxes, kps, crop)


def save_main_faces(faces: MainFaces, path: Path) -> None:
    """Store `faces` as the detect stage's `detect.npz`."""
    crop = np.array([faces.crop.x0, faces.crop.y0, faces.crop.side])
    np.savez(path, boxes=faces.boxes, keypoints=faces.keypoints, crop=crop)


def load_main_faces(path: Path) -> MainFaces:
    """Read back what `save_main_faces` stored."""
    with np.load(path) as det:
        return MainFaces(det["boxes"], det["keypoints"], CropBox(*[int(v) for v in det["crop"]]))

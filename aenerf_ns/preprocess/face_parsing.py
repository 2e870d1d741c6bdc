"""Semantic parsing maps from face-mesh landmarks plus a person mask, and the static background plate.

Classes (`parsing_labels`): the face outline splits into the upper face and the lower face (below the
nose: the audio-driven region); the inner lip contour is the mouth interior; person pixels outside the
face are hair (beside and above the face) or torso (neck and shoulders, below the jaw); the rest is
background. Directions are measured in the face's own frame, so a tilted head is parsed the same way.
"""

from __future__ import annotations

import cv2
import numpy as np
from jaxtyping import Float, UInt8

from aenerf_ns.data import parsing_labels as L
from aenerf_ns.faces.face_tracking import (
    CHIN,
    FACE_OVAL,
    FOREHEAD,
    INNER_LIPS,
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
    SUBNASALE,
)

PERSON_THRESHOLD = 0.5
"""Person-mask probability above which a pixel belongs to the person."""


def parsing_map(
    landmarks: Float[np.ndarray, "468 3"], person: Float[np.ndarray, "h w"], height: int, width: int
) -> UInt8[np.ndarray, "height width"]:
    """Label map for one frame.

    Args:
        landmarks: mesh landmarks in pixels of the output image.
        person: person probability over the whole image at any resolution.
        height, width: output size.
    """
    xy = landmarks[:, :2].astype(np.float64)
    if person.shape != (height, width):
        person = cv2.resize(person, (width, height), interpolation=cv2.INTER_LINEAR)
    labels = np.where(person > PERSON_THRESHOLD, L.TORSO, L.BACKGROUND).astype(np.uint8)

    # Face frame: origin between the eyes, "right" along the eye line, "up" toward the forehead.
    right = xy[LEFT_EYE_OUTER] - xy[RIGHT_EYE_OUTER]
    half_width = np.linalg.norm(right) / 2
    right /= np.linalg.norm(right)
    up = np.array([right[1], -right[0]])  # image y points down, so this is the face's up direction
    if up @ (xy[FOREHEAD] - xy[CHIN]) < 0:
        up = -up
    centre = (xy[LEFT_EYE_OUTER] + xy[RIGHT_EYE_OUTER]) / 2
    uu = np.arange(width, dtype=np.float32)[None, :] - np.float32(centre[0])
    vv = np.arange(height, dtype=np.float32)[:, None] - np.float32(centre[1])
    across = uu * np.float32(right[0]) + vv * np.float32(right[1])
    along = uu * np.float32(up[0]) + vv * np.float32(up[1])  # positive above the eyes

    chin_level = (xy[CHIN] - centre) @ up
    beside_head = np.abs(across) < 2.2 * half_width
    hair = (labels == L.TORSO) & beside_head & (along > chin_level * 0.45)
    labels[hair] = L.HAIR

    face = np.zeros((height, width), np.uint8)
    cv2.fillPoly(face, [np.round(xy[list(FACE_OVAL)]).astype(np.int32)], 1)
    nose_level = (xy[SUBNASALE] - centre) @ up
    face = face.astype(bool)
    labels[face] = np.where(along[face] < nose_level, L.FACE_LOWER, L.FACE_UPPER)

    mouth = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mouth, [np.round(xy[list(INNER_LIPS)]).astype(np.int32)], 1)
    labels[mouth.astype(bool)] = L.MOUTH_INTERIOR
    return labels


class BackgroundPlate:
    """Running estimate of the static background from the pixels the person does not cover.

    Frames are added one by one (a subset is enough); `finish` takes the per-pixel median over the frames
    where the pixel was background, and fills pixels never seen (always behind the person) by inpainting
    from their surroundings.
    """

    def __init__(self, height: int, width: int, max_frames: int = 60):
        self.height, self.width, self.max_frames = height, width, max_frames
        self.samples: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def add(self, image: UInt8[np.ndarray, "h w 3"], labels: UInt8[np.ndarray, "h w"]) -> None:
        background = labels == L.BACKGROUND
        # Keep away from the person's edge, where the mask is least certain.
        background = cv2.erode(background.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        self.samples.append(image)
        self.masks.append(background)

    def finish(self) -> tuple[UInt8[np.ndarray, "h w 3"], float]:
        """The plate and the fraction of its pixels that were inpainted (never seen)."""
        if not self.samples:
            raise ValueError("no frames were added to the background estimate")
        stack = np.stack(self.samples)
        seen = np.stack(self.masks)
        count = seen.sum(0)
        # Median over the frames where each pixel was background: unseen samples sort last (value 256).
        keyed = np.where(seen[..., None], stack.astype(np.int16), np.int16(256))
        keyed.sort(axis=0)
        middle = np.clip((count - 1) // 2, 0, None)[None, ..., None]
        plate = np.take_along_axis(keyed, np.broadcast_to(middle, (1, *keyed.shape[1:])), axis=0)[0]
        never = ~seen.any(0)
        plate = np.where(never[..., None], 0, plate).clip(0, 255).astype(np.uint8)
        if never.any():
            plate = cv2.inpaint(plate, never.astype(np.uint8), 9, cv2.INPAINT_TELEA)
        return plate, float(never.mean())

"""The semantic parsing classes shared by datasets, samplers and models.

Every parsing map in a talking-head dataset is a single-channel PNG whose pixel values are the ids below.
The audio-related region (the part of the face that moves with speech) is the lower face plus the mouth
interior; everything else is audio-independent.
"""

from __future__ import annotations

LABEL_NAMES: tuple[str, ...] = (
    "background",
    "torso",
    "hair",
    "face_upper",
    "face_lower",
    "mouth_interior",
)
"""Class names, indexed by label id."""

BACKGROUND = 0
TORSO = 1
HAIR = 2
FACE_UPPER = 3
FACE_LOWER = 4
MOUTH_INTERIOR = 5

AUDIO_REGION_LABELS: tuple[int, ...] = (FACE_LOWER, MOUTH_INTERIOR)
"""Label ids whose pixels form the audio-related region (lower face and mouth)."""

LABEL_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (70, 110, 200),
    (120, 70, 30),
    (240, 200, 160),
    (230, 120, 120),
    (150, 20, 60),
)
"""RGB colours used to visualise parsing maps."""

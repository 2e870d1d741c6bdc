"""Settings of `aenerf-process` and the error it raises for a video that cannot become a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

from aenerf_ns.audio.audio_features import AudioFeatureConfig


class ProcessError(ValueError):
    """The video cannot become a dataset; the message says why and what to change."""


@dataclass
class ProcessConfig:
    """Settings of `aenerf-process`."""

    fps: float = 25.0
    """Frame rate of the dataset; the video is resampled to it by timestamp."""
    resolution: int = 512
    """Side of the square output frames in pixels."""
    crop_scale: float = 2.6
    """Side of the square crop as a multiple of the detected face height (head, hair and shoulders)."""
    min_seconds: float = 3.0
    """Shortest usable clip, after untracked parts are removed."""
    min_face_px: int = 64
    """Smallest usable face height in source pixels."""
    max_gap_frames: int = 5
    """Longest run of untracked frames that is interpolated; longer runs cut the clip."""
    focal_length: float | None = None
    """Focal length in output pixels; None: the one that places the camera `camera_distance` from the head."""
    camera_distance: float = 6.0
    """Mean camera distance in head units (about 70 cm) used when the focal length is not given."""
    pose_smoothing: float = 1.0
    """Gaussian smoothing of the head pose over time, in frames (0: none)."""
    batch_size: int = 32
    """Frames per batch through the face models."""
    max_seconds: float | None = None
    """Use only the first this-many seconds of the video (None: all of it)."""
    device: str = "auto"
    """Where the face models run: auto (cuda when available), cpu or cuda."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """Audio features to precompute (the same settings the dataparser will use)."""

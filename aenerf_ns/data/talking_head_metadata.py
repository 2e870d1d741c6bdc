"""What the `talking-head` dataparser hands to datasets and models, as one typed record.

nerfstudio passes `DataparserOutputs.metadata` (a dict) on to the datasets and, from the training split, to the
model. The talking-head dataparser puts a single `TalkingHeadMetadata` under `METADATA_KEY` there;
`talking_head_metadata` reads it back and says clearly when a dataset or model is given other outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jaxtyping import Float, Int, UInt8
from torch import Tensor

from aenerf_ns.audio.audio_features import AudioFeatureConfig

METADATA_KEY = "talking_head"
"""Key of the `TalkingHeadMetadata` in `DataparserOutputs.metadata`."""


@dataclass
class IdentityRecord:
    """One identity (dataset folder): its speech and the training part of its video."""

    name: str
    """Name of the person (transforms.json's `identity`)."""
    audio_path: Path
    """The identity's speech track."""
    train_frames: Int[Tensor, " n"]
    """Frame indices of the training part of the video."""
    train_image_paths: list[Path]
    """RGB frame of each training frame."""
    train_camera_to_worlds: Float[Tensor, "n 3 4"]
    """Camera-to-head pose of each training frame."""
    train_audio_rows: Int[Tensor, " n"]
    """Row of the joint audio-feature table that drives each training frame."""
    intrinsics: Float[Tensor, " 4"]
    """fx, fy, cx, cy in pixels (one camera for the whole video)."""
    train_mouth_opening: Float[Tensor, " n"] | None = None
    """How far the mouth is open in each training frame, read from its parsing map (`mouth_track`)."""


@dataclass
class TalkingHeadMetadata:
    """Audio, identities and per-image labels of one split of a talking-head dataset."""

    identities: list[IdentityRecord]
    """Every identity trained together, in identity-index order (cameras' `identity` metadata)."""
    fps: float
    """Video frame rate shared by all identities."""
    audio_features: Float[Tensor, "rows flat"]
    """Joint audio-feature table: every frame of every identity, each row a flattened feature window."""
    audio_feature_shape: tuple[int, int]
    """(window, feature dim) that each table row flattens."""
    audio_segments: Int[Tensor, " rows"]
    """Identity index of each table row (audio smoothing never mixes clips)."""
    default_audio: Float[Tensor, " flat"]
    """Mean table row: the audio of cameras that carry none (the viewer's free camera)."""
    audio_feature_config: AudioFeatureConfig
    """Settings the table was computed with (new audio for the viewer must match them)."""
    background_images: UInt8[Tensor, "identities height width 3"] | None
    """Static background plate of each identity; None when an identity has none."""
    camera_pose_mean: Float[Tensor, " 12"]
    """Mean flattened 3x4 camera-to-head pose of this split's images."""
    parsing_filenames: list[Path]
    """Parsing label map of each image of this split."""
    image_identity: Int[Tensor, " images"]
    """Identity index of each image of this split."""
    frame_indices: Int[Tensor, " images"]
    """Frame index (within its identity's video) of each image of this split."""
    mouth_open: Float[Tensor, " images"] | None
    """Ground-truth mouth opening of each image of this split, where every frame has one (synthetic data)."""

    def as_metadata(self) -> dict:
        """The `DataparserOutputs.metadata` dict that carries this record."""
        return {METADATA_KEY: self}


def talking_head_metadata(metadata: dict | None) -> TalkingHeadMetadata:
    """The `TalkingHeadMetadata` in a dataparser's (or dataset's) metadata dict."""
    record = (metadata or {}).get(METADATA_KEY)
    if not isinstance(record, TalkingHeadMetadata):
        raise ValueError(
            f"the dataparser outputs carry no talking-head metadata (metadata[{METADATA_KEY!r}]): talking-head "
            "datasets and models are built from the `talking-head` dataparser's outputs"
        )
    return record

"""The `talking-head` dataparser: one or several talking-head dataset folders -> nerfstudio cameras.

Each camera carries two numbers in its metadata, which nerfstudio slices per ray in training,
evaluation, the viewer and rendering alike:

- ``audio_index``: the row of the clip's audio-feature table that drives this frame. The table itself
  (every frame of every identity, `TalkingHeadMetadata.audio_features`) lives in the model, so the model
  can smooth audio over neighbouring frames and a render can swap in a new audio track.
- ``identity``: which identity (dataset folder) the frame shows, selecting that identity's background
  plate (and, for AE-NeRF, its reference frames).

Everything else datasets and models need travels as one `TalkingHeadMetadata` in the outputs' metadata,
including each identity's training frames, from which a model picks frames of its own (AE-NeRF's references).

`data` may be one dataset folder (a `transforms.json` inside) or a folder of dataset folders: then every
sub-folder with a `transforms.json` is one identity, which is how a multi-identity base model is trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.data.dataset_format import DatasetFormatError, TalkingHeadMeta, read_transforms
from aenerf_ns.data.mouth_track import landmark_mouth_track, mouth_track
from aenerf_ns.data.talking_head_metadata import IdentityRecord, TalkingHeadMetadata

DEFAULT_AABB = ((-1.6, -2.6, -1.6), (1.6, 1.4, 1.6))
"""Scene box in head coordinates: the head (about one unit in radius) plus neck and shoulders."""


@dataclass
class TalkingHeadDataParserConfig(DataParserConfig):
    """Reads talking-head dataset folders (transforms.json, frames, parsing maps, audio)."""

    _target: type = field(default_factory=lambda: TalkingHeadDataParser)
    data: Path = Path("data/synthetic/synth00")
    """Dataset folder holding transforms.json, or a folder of such folders (one identity each)."""
    train_fraction: float = 0.5
    """Leading fraction of each video used for training; the rest of the video is held out for evaluation."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """How the clip's audio becomes per-frame features."""
    scene_aabb: tuple[tuple[float, float, float], tuple[float, float, float]] = DEFAULT_AABB
    """Scene bounds (min corner, max corner) in head coordinates."""
    frame_times: bool = False
    """Give cameras a time (frame index / (frames - 1) of their clip) for time-conditioned methods such as
    dnerf; held-out frames get the last training frame's time, since such a method knows no later time."""
    mouth_track: Literal["auto", "landmarks", "parsing"] = "auto"
    """Where each training frame's mouth opening (the models' mouth targets) is read: the clip's face-mesh
    landmarks (`landmarks.npy`, written by aenerf-process), its parsing maps, or auto (landmarks when the clip
    has them)."""


def find_dataset_folders(data: Path) -> list[Path]:
    """`data` itself if it is a dataset, else its sub-folders that are datasets (sorted by name)."""
    data = Path(data)
    if not data.exists():
        raise DatasetFormatError(f"dataset folder {data} does not exist")
    if (data / "transforms.json").exists() or not data.is_dir():
        return [data]
    found = sorted(p for p in data.iterdir() if (p / "transforms.json").is_file())
    if not found:
        raise DatasetFormatError(
            f"{data} has no transforms.json, and none of its sub-folders does: expected a talking-head dataset "
            "folder (see README, 'Dataset format') or a folder of them"
        )
    return found


@dataclass
class _Identity:
    meta: TalkingHeadMeta
    features: np.ndarray
    offset: int  # first row of this identity in the joint audio-feature table


@dataclass
class _SplitFrames:
    """Per-identity parts of one split's frames, concatenated in camera order."""

    poses: list[np.ndarray] = field(default_factory=list)
    intrinsics: list[np.ndarray] = field(default_factory=list)
    audio_rows: list[np.ndarray] = field(default_factory=list)
    identity: list[np.ndarray] = field(default_factory=list)
    frame_indices: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    image_paths: list[Path] = field(default_factory=list)
    parsing_paths: list[Path] = field(default_factory=list)
    mouth_open: list[float | None] = field(default_factory=list)


@dataclass
class TalkingHeadDataParser(DataParser):
    """Talking-head dataparser; see the module docstring."""

    config: TalkingHeadDataParserConfig

    def __init__(self, config: TalkingHeadDataParserConfig):
        super().__init__(config=config)
        self.config = config
        self._identities: list[_Identity] | None = None

    def split_indices(self, num_frames: int, split: str) -> np.ndarray:
        """Frame indices of a split: the first `train_fraction` of the video trains, the rest evaluates."""
        if not 0.0 < self.config.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be between 0 and 1, got {self.config.train_fraction}")
        num_train = int(np.floor(num_frames * self.config.train_fraction))
        if num_train < 1 or num_train >= num_frames:
            raise DatasetFormatError(
                f"{num_frames} frames cannot be split with train_fraction={self.config.train_fraction}: "
                "both the training and the evaluation part need at least one frame"
            )
        return np.arange(num_train) if split == "train" else np.arange(num_train, num_frames)

    def _load(self) -> list[_Identity]:
        """Read every identity once: train and eval splits come from the same read."""
        if self._identities is not None:
            return self._identities
        identities: list[_Identity] = []
        offset = 0
        for root in find_dataset_folders(self.config.data):
            meta = read_transforms(root)
            feats = compute_audio_features(
                meta.audio_path,
                meta.fps,
                meta.num_frames,
                self.config.audio,
                cache_dir=meta.root / "cache" / "audio_features",
            )
            if identities:
                first = identities[0]
                if (meta.height, meta.width) != (first.meta.height, first.meta.width):
                    raise DatasetFormatError(
                        f"{meta.root} has {meta.width}x{meta.height} frames but {first.meta.root} has "
                        f"{first.meta.width}x{first.meta.height}: identities trained together need one frame size"
                    )
                if abs(meta.fps - first.meta.fps) > 1e-6:
                    raise DatasetFormatError(
                        f"{meta.root} is {meta.fps} fps but {first.meta.root} is {first.meta.fps} fps: "
                        "identities trained together need one frame rate"
                    )
            identities.append(_Identity(meta=meta, features=feats, offset=offset))
            offset += meta.num_frames
        self._identities = identities
        return identities

    def _split_frames(self, identities: list[_Identity], split: str) -> _SplitFrames:
        """The split's frames of every identity, in camera order."""
        frames = _SplitFrames()
        for k, ident in enumerate(identities):
            meta = ident.meta
            idx = self.split_indices(meta.num_frames, split)
            last_trained = self.split_indices(meta.num_frames, "train")[-1]
            frames.poses.append(np.stack([meta.frames[i].camera_to_world for i in idx])[:, :3, :4])
            frames.intrinsics.append(np.tile([meta.fl_x, meta.fl_y, meta.cx, meta.cy], (len(idx), 1)))
            frames.audio_rows.append(idx + ident.offset)
            frames.identity.append(np.full(len(idx), k))
            frames.frame_indices.append(idx)
            frames.times.append(np.minimum(idx, last_trained) / max(meta.num_frames - 1, 1))
            frames.image_paths += [meta.frames[i].image_path for i in idx]
            frames.parsing_paths += [meta.frames[i].parsing_path for i in idx]
            frames.mouth_open += [meta.frames[i].mouth_open for i in idx]
        return frames

    def _cameras(self, frames: _SplitFrames, first: TalkingHeadMeta) -> Cameras:
        """One camera per frame, carrying its audio row and identity (and, for time-conditioned methods, time)."""
        intrinsics = np.concatenate(frames.intrinsics)

        def column(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(values).float()[:, None]

        return Cameras(
            camera_to_worlds=torch.from_numpy(np.concatenate(frames.poses)).float(),
            fx=column(intrinsics[:, 0]),
            fy=column(intrinsics[:, 1]),
            cx=column(intrinsics[:, 2]),
            cy=column(intrinsics[:, 3]),
            width=first.width,
            height=first.height,
            camera_type=CameraType.PERSPECTIVE,
            times=column(np.concatenate(frames.times)) if self.config.frame_times else None,
            metadata={
                "audio_index": column(np.concatenate(frames.audio_rows)),
                "identity": column(np.concatenate(frames.identity)),
            },
        )

    def _identity_record(self, ident: _Identity) -> IdentityRecord:
        """An identity's speech and training frames, from which models pick frames of their own (references)."""
        meta = ident.meta
        train = self.split_indices(meta.num_frames, "train")
        return IdentityRecord(
            name=meta.identity,
            audio_path=meta.audio_path,
            train_frames=torch.from_numpy(train).long(),
            train_image_paths=[meta.frames[i].image_path for i in train],
            train_camera_to_worlds=torch.from_numpy(
                np.stack([meta.frames[i].camera_to_world[:3, :4] for i in train])
            ).float(),
            train_audio_rows=torch.from_numpy(train + ident.offset).long(),
            train_mouth_opening=torch.from_numpy(self._mouth_track(meta, train)).float(),
            intrinsics=torch.tensor([meta.fl_x, meta.fl_y, meta.cx, meta.cy], dtype=torch.float32),
        )

    def _mouth_track(self, meta: TalkingHeadMeta, frames: np.ndarray) -> np.ndarray:
        """The mouth opening of `frames` of a clip, from the source `mouth_track` names."""
        landmarks_path = meta.root / "landmarks.npy"
        source = self.config.mouth_track
        if source == "auto":
            source = "landmarks" if landmarks_path.is_file() else "parsing"
        if source == "parsing":
            paths = [meta.frames[i].parsing_path for i in frames]
            return mouth_track(paths, cache_dir=meta.root / "cache" / "mouth_track")
        if not landmarks_path.is_file():
            raise DatasetFormatError(
                f"{landmarks_path} does not exist: process the clip with aenerf-process, or read the mouth from the "
                "parsing maps (--pipeline.datamanager.dataparser.mouth-track parsing)"
            )
        landmarks = np.load(landmarks_path)
        if landmarks.ndim != 3 or len(landmarks) != meta.num_frames:
            raise DatasetFormatError(
                f"{landmarks_path} holds landmarks of shape {landmarks.shape}, expected ({meta.num_frames}, 468, 3): "
                "one face mesh per frame of transforms.json"
            )
        return landmark_mouth_track(landmarks)[frames]

    def _metadata(self, identities: list[_Identity], frames: _SplitFrames) -> TalkingHeadMetadata:
        """The joint audio table, the identities and the split's per-image labels."""
        table = np.concatenate([ident.features for ident in identities])
        flat = table.reshape(len(table), -1)
        segments = np.concatenate([np.full(ident.meta.num_frames, k) for k, ident in enumerate(identities)])
        mouth = frames.mouth_open
        return TalkingHeadMetadata(
            identities=[self._identity_record(ident) for ident in identities],
            fps=identities[0].meta.fps,
            audio_features=torch.from_numpy(flat).float(),
            audio_feature_shape=(int(table.shape[1]), int(table.shape[2])),
            audio_segments=torch.from_numpy(segments).long(),
            default_audio=torch.from_numpy(flat.mean(0)).float(),
            audio_feature_config=self.config.audio,
            background_images=_background_plates(identities),
            camera_pose_mean=torch.from_numpy(np.concatenate(frames.poses).reshape(-1, 12).mean(0)).float(),
            parsing_filenames=frames.parsing_paths,
            image_identity=torch.from_numpy(np.concatenate(frames.identity)).long(),
            frame_indices=torch.from_numpy(np.concatenate(frames.frame_indices)),
            mouth_open=None if any(m is None for m in mouth) else torch.tensor(mouth, dtype=torch.float32),
        )

    def _generate_dataparser_outputs(self, split: Literal["train", "val", "test"] = "train") -> DataparserOutputs:
        identities = self._load()
        frames = self._split_frames(identities, split)
        return DataparserOutputs(
            image_filenames=frames.image_paths,
            cameras=self._cameras(frames, identities[0].meta),
            scene_box=SceneBox(aabb=torch.tensor(self.config.scene_aabb, dtype=torch.float32)),
            metadata=self._metadata(identities, frames).as_metadata(),
        )


def _background_plates(identities: list[_Identity]) -> torch.Tensor | None:
    """Every identity's background plate as uint8 (identities, H, W, 3); None when any identity has none."""
    from PIL import Image

    plates = []
    for ident in identities:
        meta = ident.meta
        if meta.background_path is None:
            plates.append(None)
            continue
        plate = np.array(Image.open(meta.background_path).convert("RGB"))
        if plate.shape[:2] != (meta.height, meta.width):
            raise DatasetFormatError(
                f"background plate {meta.background_path} is {plate.shape[1]}x{plate.shape[0]}, "
                f"but the frames are {meta.width}x{meta.height}"
            )
        plates.append(plate)
    if any(p is None for p in plates):
        return None
    return torch.from_numpy(np.stack(plates))

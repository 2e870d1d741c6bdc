"""The `talking-head` dataparser: one or several talking-head dataset folders -> nerfstudio cameras.

Each camera carries two numbers in its metadata, which nerfstudio slices per ray in training,
evaluation, the viewer and rendering alike:

- ``audio_index``: the row of the clip's audio-feature table that drives this frame. The table itself
  (every frame of every identity, ``metadata["audio_features"]``) lives in the model, so the model can
  smooth audio over neighbouring frames and a render can swap in a new audio track.
- ``identity``: which identity (dataset folder) the frame shows, selecting that identity's reference
  frames and background plate.

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

from aenerf_ns.aenerf.reference_views import select_reference_frames
from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.data.dataset_format import DatasetFormatError, TalkingHeadMeta, read_transforms
from aenerf_ns.data.parsing_labels import AUDIO_REGION_LABELS, LABEL_NAMES

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
    num_references: int = 4
    """Reference frames per identity (the paper's L), picked from the training part of the video."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """How the clip's audio becomes per-frame features."""
    scene_aabb: tuple[tuple[float, float, float], tuple[float, float, float]] = DEFAULT_AABB
    """Scene bounds (min corner, max corner) in head coordinates."""
    frame_times: bool = False
    """Give cameras a time (frame index / (frames - 1) of their clip) for time-conditioned methods such as
    dnerf; held-out frames get the last training frame's time, since such a method knows no later time."""


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

    def _references(self, identities: list[_Identity]) -> dict[str, torch.Tensor]:
        """Per identity, `num_references` training frames spread over the audio (farthest-point sampling)."""
        from PIL import Image

        images, c2ws, intrinsics, audio_rows, frames = [], [], [], [], []
        for ident in identities:
            meta = ident.meta
            train = self.split_indices(meta.num_frames, "train")
            count = min(self.config.num_references, len(train))
            picks = train[select_reference_frames(ident.features[train].reshape(len(train), -1), count)]
            if count < self.config.num_references:  # very short clips: repeat frames to keep the shape
                picks = np.resize(picks, self.config.num_references)
            images.append(np.stack([np.array(Image.open(meta.frames[i].image_path).convert("RGB")) for i in picks]))
            c2ws.append(np.stack([meta.frames[i].camera_to_world[:3, :4] for i in picks]))
            intrinsics.append(np.tile([meta.fl_x, meta.fl_y, meta.cx, meta.cy], (len(picks), 1)))
            audio_rows.append(picks + ident.offset)
            frames.append(picks)
        return {
            "images": torch.from_numpy(np.stack(images)),
            "camera_to_worlds": torch.from_numpy(np.stack(c2ws)).float(),
            "intrinsics": torch.from_numpy(np.stack(intrinsics)).float(),
            "audio_index": torch.from_numpy(np.stack(audio_rows)).long(),
            "frame_indices": torch.from_numpy(np.stack(frames)).long(),
        }

    def _generate_dataparser_outputs(self, split: Literal["train", "val", "test"] = "train") -> DataparserOutputs:
        from PIL import Image

        identities = self._load()
        first = identities[0].meta
        poses, fx, fy, cx, cy, audio_index, identity_index = [], [], [], [], [], [], []
        image_filenames, parsing_filenames, frame_indices, mouth, times = [], [], [], [], []
        plates = []
        for k, ident in enumerate(identities):
            meta = ident.meta
            idx = self.split_indices(meta.num_frames, split)
            poses.append(np.stack([meta.frames[i].camera_to_world for i in idx])[:, :3, :4])
            for values, value in ((fx, meta.fl_x), (fy, meta.fl_y), (cx, meta.cx), (cy, meta.cy)):
                values.append(np.full(len(idx), value))
            audio_index.append(idx + ident.offset)
            identity_index.append(np.full(len(idx), k))
            image_filenames += [meta.frames[i].image_path for i in idx]
            parsing_filenames += [meta.frames[i].parsing_path for i in idx]
            frame_indices.append(idx)
            last_trained = self.split_indices(meta.num_frames, "train")[-1]
            times.append(np.minimum(idx, last_trained) / max(meta.num_frames - 1, 1))
            mouth += [meta.frames[i].mouth_open for i in idx]
            plate = None
            if meta.background_path is not None:
                plate = np.array(Image.open(meta.background_path).convert("RGB"))
                if plate.shape[:2] != (meta.height, meta.width):
                    raise DatasetFormatError(
                        f"background plate {meta.background_path} is {plate.shape[1]}x{plate.shape[0]}, "
                        f"but the frames are {meta.width}x{meta.height}"
                    )
            plates.append(plate)

        def column(parts: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.concatenate(parts)).float()[:, None]

        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(np.concatenate(poses)).float(),
            fx=column(fx),
            fy=column(fy),
            cx=column(cx),
            cy=column(cy),
            width=first.width,
            height=first.height,
            camera_type=CameraType.PERSPECTIVE,
            times=column(times) if self.config.frame_times else None,
            metadata={"audio_index": column(audio_index), "identity": column(identity_index)},
        )
        table = np.concatenate([ident.features for ident in identities])
        segments = np.concatenate([np.full(ident.meta.num_frames, k) for k, ident in enumerate(identities)])
        if any(p is None for p in plates):
            background_images = None
        else:
            background_images = torch.from_numpy(np.stack(plates))
        metadata = {
            "parsing_filenames": parsing_filenames,
            "label_names": LABEL_NAMES,
            "audio_region_labels": AUDIO_REGION_LABELS,
            "background_images": background_images,
            "image_identity": torch.from_numpy(np.concatenate(identity_index)).long(),
            "identities": [ident.meta.identity for ident in identities],
            "num_identities": len(identities),
            "camera_pose_mean": torch.from_numpy(np.concatenate(poses).reshape(-1, 12).mean(0)).float(),
            "audio_features": torch.from_numpy(table.reshape(len(table), -1)).float(),
            "audio_segments": torch.from_numpy(segments).long(),
            "audio_feature_shape": tuple(table.shape[1:]),
            "default_audio": torch.from_numpy(table.reshape(len(table), -1).mean(0)).float(),
            "references": self._references(identities),
            "frame_indices": torch.from_numpy(np.concatenate(frame_indices)),
            "mouth_open": None if any(m is None for m in mouth) else torch.tensor(mouth, dtype=torch.float32),
            "fps": first.fps,
            "audio_feature_config": self.config.audio,
            "identity": first.identity,
            "audio_path": first.audio_path,
            "image_size": (first.height, first.width),
        }
        return DataparserOutputs(
            image_filenames=image_filenames,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor(self.config.scene_aabb, dtype=torch.float32)),
            metadata=metadata,
        )

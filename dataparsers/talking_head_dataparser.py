"""The `talking-head` dataparser: a talking-head dataset folder -> nerfstudio cameras with audio metadata.

Each camera carries its video frame's audio feature window, flattened, as ``metadata["audio"]``;
nerfstudio slices camera metadata per ray, so every ray of a frame reaches the model with that frame's
audio, in training, evaluation, the viewer and rendering alike. Parsing maps are listed in the outputs'
metadata and loaded per image by `TalkingHeadDataset`.
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

from aenerf_ns.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.dataset_format import DatasetFormatError, TalkingHeadMeta, read_transforms
from aenerf_ns.parsing_labels import AUDIO_REGION_LABELS, LABEL_NAMES

DEFAULT_AABB = ((-1.6, -2.6, -1.6), (1.6, 1.4, 1.6))
"""Scene box in head coordinates: the head (about one unit in radius) plus neck and shoulders."""


@dataclass
class TalkingHeadDataParserConfig(DataParserConfig):
    """Reads a talking-head dataset folder (transforms.json, frames, parsing maps, audio)."""

    _target: type = field(default_factory=lambda: TalkingHeadDataParser)
    data: Path = Path("data/synthetic/synth00")
    """Dataset folder holding transforms.json."""
    train_fraction: float = 0.5
    """Leading fraction of the video used for training; the rest of the video is held out for evaluation."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """How the clip's audio becomes per-frame features."""
    scene_aabb: tuple[tuple[float, float, float], tuple[float, float, float]] = DEFAULT_AABB
    """Scene bounds (min corner, max corner) in head coordinates."""


@dataclass
class TalkingHeadDataParser(DataParser):
    """Talking-head dataparser; see the module docstring."""

    config: TalkingHeadDataParserConfig

    def __init__(self, config: TalkingHeadDataParserConfig):
        super().__init__(config=config)
        self.config = config
        self._meta: TalkingHeadMeta | None = None
        self._features: np.ndarray | None = None

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

    def _generate_dataparser_outputs(self, split: Literal["train", "val", "test"] = "train") -> DataparserOutputs:
        if self._meta is None:  # train and eval splits come from one read of the dataset
            self._meta = read_transforms(self.config.data)
        meta = self._meta
        if self._features is None:
            self._features = compute_audio_features(
                meta.audio_path,
                meta.fps,
                meta.num_frames,
                self.config.audio,
                cache_dir=meta.root / "cache" / "audio_features",
            )
        feats = self._features
        idx = self.split_indices(meta.num_frames, split)
        poses = np.stack([meta.frames[i].camera_to_world for i in idx])[:, :3, :4]
        audio = torch.from_numpy(feats[idx].reshape(len(idx), -1))
        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(poses).float(),
            fx=meta.fl_x,
            fy=meta.fl_y,
            cx=meta.cx,
            cy=meta.cy,
            width=meta.width,
            height=meta.height,
            camera_type=CameraType.PERSPECTIVE,
            metadata={"audio": audio},
        )
        background = None
        if meta.background_path is not None:
            from PIL import Image

            background = torch.from_numpy(np.array(Image.open(meta.background_path).convert("RGB")))
            if background.shape[:2] != (meta.height, meta.width):
                raise DatasetFormatError(
                    f"background plate {meta.background_path} is {background.shape[1]}x{background.shape[0]}, "
                    f"but the frames are {meta.width}x{meta.height}"
                )
        mouth = [meta.frames[i].mouth_open for i in idx]
        metadata = {
            "parsing_filenames": [meta.frames[i].parsing_path for i in idx],
            "label_names": LABEL_NAMES,
            "audio_region_labels": AUDIO_REGION_LABELS,
            "background_image": background,
            "audio_feature_shape": tuple(feats.shape[1:]),
            "default_audio": torch.from_numpy(feats.reshape(len(feats), -1).mean(0)),
            "frame_indices": torch.from_numpy(idx),
            "mouth_open": None if any(m is None for m in mouth) else torch.tensor(mouth, dtype=torch.float32),
            "fps": meta.fps,
            "identity": meta.identity,
            "audio_path": meta.audio_path,
            "image_size": (meta.height, meta.width),
        }
        return DataparserOutputs(
            image_filenames=[meta.frames[i].image_path for i in idx],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor(self.config.scene_aabb, dtype=torch.float32)),
            metadata=metadata,
        )

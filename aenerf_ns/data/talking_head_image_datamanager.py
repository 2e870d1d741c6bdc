"""Data manager for models that render whole frames (Gaussian splatting): nerfstudio's full-image manager on
talking-head data, holding a bounded set of training frames.

Each training step gets one camera and its frame with everything `TalkingHeadDataset` adds (parsing map, audio-region
mask, background plate). The camera keeps the dataparser's metadata (`audio_index`, `identity`), so the model finds
the frame's audio exactly as the ray-based methods do, plus nerfstudio's `cam_idx` (the training-frame index).

nerfstudio's full-image manager decodes and keeps every training frame, so its memory grows with the clip. Here the
training frames are held as the ray-based manager holds them (`talking_head_datamanager`), through the same
nerfstudio frame cache and with the same options: up to `train_num_images_to_sample_from` frames at a time (a smaller
dataset is held whole), a new random set read from disk every `train_num_times_to_repeat_images` steps. Steps take
the held frames in a shuffled order, one whole frame each, and start a new shuffle when all have been used.
Evaluation picks its frames as nerfstudio's manager does, but reads each from disk when it is evaluated instead of
holding the whole evaluation split (half the clip by default) from the first evaluation on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.utils.dataloaders import CacheDataloader
from nerfstudio.data.utils.nerfstudio_collate import nerfstudio_collate

from aenerf_ns.data.dataset_format import DatasetFormatError
from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.data.talking_head_dataset import TalkingHeadDataset


@dataclass
class TalkingHeadImageDataManagerConfig(FullImageDatamanagerConfig):
    """Whole talking-head frames, one per training step, read through the `talking-head` dataparser."""

    _target: type = field(default_factory=lambda: TalkingHeadImageDataManager)
    dataparser: TalkingHeadDataParserConfig = field(default_factory=TalkingHeadDataParserConfig)
    """Where the talking-head dataset is read from."""
    cache_images: Literal["cpu", "gpu"] = "gpu"
    """Keep the frames on the training device ("gpu", which is the CPU when training on one) or in pinned CPU
    memory ("cpu", CUDA machines only)."""
    train_num_images_to_sample_from: int = 250
    """Training frames held in memory at a time (all of them when there are fewer; -1: always all)."""
    train_num_times_to_repeat_images: int = 1000
    """Training steps between draws of a new set of held frames (when not all are held)."""


class TalkingHeadImageDataManager(FullImageDatamanager[TalkingHeadDataset]):
    """See the module docstring."""

    config: TalkingHeadImageDataManagerConfig
    _held: dict | None = None
    """The frame cache's current set of training frames, stacked (None before the first step)."""

    def setup_train(self):
        """The frame cache over the training split, and the cameras the steps are cut from."""
        distorted = self.train_dataset.cameras.distortion_params
        if distorted is not None and bool(torch.any(distorted != 0)):
            raise DatasetFormatError(
                f"{self.config.dataparser.data}: transforms.json gives lens distortion, which talking-head datasets "
                "do not have (frames are used as they are): remove the distortion coefficients"
            )
        on_device = self.config.cache_images == "gpu"
        exclude = list(self.exclude_batch_keys_from_device)
        if on_device and "image" in exclude:
            exclude.remove("image")  # the frame itself lives on the training device, as nerfstudio's cache keeps it
        self.train_image_dataloader = CacheDataloader(
            self.train_dataset,
            num_images_to_sample_from=self.config.train_num_images_to_sample_from,
            num_times_to_repeat_images=self.config.train_num_times_to_repeat_images,
            device=self.device if on_device else "cpu",
            collate_fn=nerfstudio_collate,
            exclude_batch_keys_from_device=exclude,
        )
        self.iter_train_image_dataloader = iter(self.train_image_dataloader)
        self.train_cameras = self.train_dataset.cameras.to(self.device) if on_device else self.train_dataset.cameras
        self._held = None
        self._order: list[int] = []
        self._shuffle = random.Random(self.config.train_cameras_sampling_seed)

    @property
    def held_frames(self) -> list[int]:
        """Training-frame indices held in memory now (empty before the first step)."""
        return [] if self._held is None else self._held["image_idx"].tolist()

    def get_train_rays_per_batch(self) -> int:
        """Pixels of one training frame (what one step renders)."""
        return int(self.train_dataset.cameras.height[0]) * int(self.train_dataset.cameras.width[0])

    def next_train(self, step: int) -> tuple[Cameras, dict]:
        """One whole held frame and its camera; the frame cache decides when a new set is read."""
        held = next(self.iter_train_image_dataloader)
        if held is not self._held:  # a new set was read: the previous one is released
            if self.config.cache_images == "cpu" and torch.cuda.is_available():
                held["image"] = held["image"].pin_memory()
            self._held = held
            self._order = []
        if not self._order:
            self._order = list(range(len(held["image_idx"])))
            self._shuffle.shuffle(self._order)
        slot = self._order.pop()
        data = {key: value[slot] for key, value in held.items()}
        image_idx = int(data["image_idx"])
        data["image_idx"] = image_idx
        data["image"] = data["image"].to(self.device)
        camera = self.train_cameras[image_idx : image_idx + 1].to(self.device)
        if camera.metadata is None:
            camera.metadata = {}
        camera.metadata["cam_idx"] = image_idx
        return camera, data

    def _eval_frame(self, image_idx: int) -> tuple[Cameras, dict]:
        data = self.eval_dataset.get_data(image_idx, image_type=self.config.cache_images_type)
        data["image"] = data["image"].to(self.device)
        return self.eval_dataset.cameras[image_idx : image_idx + 1].to(self.device), data

    def next_eval_image(self, step: int) -> tuple[Cameras, dict]:
        """A random evaluation frame not yet shown in this pass (nerfstudio's choice), read from disk."""
        image_idx = self.eval_unseen_cameras.pop(random.randint(0, len(self.eval_unseen_cameras) - 1))
        if not self.eval_unseen_cameras:
            self.eval_unseen_cameras = list(range(len(self.eval_dataset)))
        return self._eval_frame(image_idx)

    @property
    def fixed_indices_eval_dataloader(self) -> EvalFrames:
        """Every evaluation frame with its camera, in order, each read when it is reached."""
        return EvalFrames(self)


class EvalFrames:
    """The evaluation split as (camera, frame) pairs, read one at a time (nerfstudio's pipeline takes `len` and
    iterates)."""

    def __init__(self, manager: TalkingHeadImageDataManager):
        self.manager = manager

    def __len__(self) -> int:
        return len(self.manager.eval_dataset)

    def __iter__(self) -> Iterator[tuple[Cameras, dict]]:
        for image_idx in range(len(self)):
            yield self.manager._eval_frame(image_idx)

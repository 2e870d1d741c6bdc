"""Data manager for talking-head models: the vanilla one, with each training ray's sampler group attached.

The model only receives the ray bundle, so what it needs from the batch is copied into
`RayBundle.metadata`: a sampler's per-ray `ray_group` where it assigns one (AE-NeRF's region sampler
decides per ray which field renders it; rays without a group, at evaluation, in the viewer and when
rendering, go through both fields), and each ray's camera pose and training-frame index (SSP-NeRF's torso
deformation is conditioned on them).

The pixel sampler is any nerfstudio `PixelSamplerConfig`; each method's preset sets its own (a subclass
instance), and the command line then offers that sampler's options under `--pipeline.datamanager.pixel-sampler.`.

Frames are held in memory in a bounded set (nerfstudio's own image sampling): a dataset of up to
`train_num_images_to_sample_from` frames is cached whole, as before; a larger one (a base model on many
identities) holds that many random frames and draws a new set from disk every
`train_num_times_to_repeat_images` steps, so memory does not grow with the number of frames.

In a distributed run (`aenerf-train --machine.num-devices N`) each process reads only its own shard of the training
frames (`training_shards`): whole identities when there are enough of them, otherwise every N-th frame. Only rank 0
evaluates, so only rank 0 reads evaluation frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.pixel_samplers import PixelSamplerConfig
from nerfstudio.data.utils.dataloaders import CacheDataloader
from nerfstudio.model_components.ray_generators import RayGenerator
from nerfstudio.utils import comms
from nerfstudio.utils.rich_utils import CONSOLE

from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.data.talking_head_dataset import TalkingHeadDataset
from aenerf_ns.data.talking_head_metadata import talking_head_metadata
from aenerf_ns.data.training_shards import ShardView, TrainingShard, training_shard


@dataclass
class TalkingHeadDataManagerConfig(VanillaDataManagerConfig):
    """Talking-head data: the `talking-head` dataparser and the method's ray sampler."""

    _target: type = field(default_factory=lambda: TalkingHeadDataManager)
    dataparser: TalkingHeadDataParserConfig = field(default_factory=TalkingHeadDataParserConfig)
    """Where the talking-head dataset is read from."""
    pixel_sampler: PixelSamplerConfig = field(default_factory=PixelSamplerConfig)
    """How training rays are drawn: set by each method (region-wise for AE-NeRF, semantic-aware for SSP-NeRF)."""
    train_num_images_to_sample_from: int = 250
    """Training frames held in memory at a time (all of them when there are fewer; -1: always all)."""
    train_num_times_to_repeat_images: int = 1000
    """Training steps between draws of a new set of held frames (when not all are held)."""
    eval_num_images_to_sample_from: int = 50
    """Evaluation frames held in memory at a time (all of them when there are fewer; -1: always all)."""
    eval_num_times_to_repeat_images: int = 1000
    """Steps between draws of a new set of held evaluation frames (when not all are held)."""


def _attach_camera_pose(ray_bundle, cameras, with_frame: bool) -> None:
    """Copy each ray's camera-to-head pose (and, for training, its frame index) into the ray metadata."""
    if ray_bundle.metadata is None:
        ray_bundle.metadata = {}
    idx = ray_bundle.camera_indices.reshape(-1).long()
    poses = cameras.camera_to_worlds.to(ray_bundle.origins.device)[idx]
    ray_bundle.metadata["camera_pose"] = poses.reshape(-1, 12)
    if with_frame:
        ray_bundle.metadata["train_frame"] = idx[:, None]


class TalkingHeadDataManager(VanillaDataManager[TalkingHeadDataset]):
    """See the module docstring."""

    shard: TrainingShard | None = None
    """This process's training frames in a distributed run (None: all of them)."""

    def setup_train(self):
        if self.world_size <= 1:
            super().setup_train()
            return
        meta = talking_head_metadata(self.train_dataset.metadata)
        rank = self._global_rank()
        self.shard = training_shard(meta.image_identity, rank, self.world_size)
        CONSOLE.print(self.shard.describe(rank, self.world_size, [ident.name for ident in meta.identities]))
        # nerfstudio's loader over the shard; the sampler and ray generator keep the full split's cameras
        self.train_image_dataloader = CacheDataloader(
            ShardView(self.train_dataset, self.shard),
            num_images_to_sample_from=self.config.train_num_images_to_sample_from,
            num_times_to_repeat_images=self.config.train_num_times_to_repeat_images,
            device=self.device,
            # it decodes frames on 4 threads per "worker": the machine's cores shared by its processes
            num_workers=max(1, (os.cpu_count() or 1) // (4 * comms.get_local_size())),
            collate_fn=self.config.collate_fn,
            exclude_batch_keys_from_device=self.exclude_batch_keys_from_device,
        )
        self.iter_train_image_dataloader = iter(self.train_image_dataloader)
        self.train_pixel_sampler = self._get_pixel_sampler(self.train_dataset, self.config.train_num_rays_per_batch)
        self.train_ray_generator = RayGenerator(self.train_dataset.cameras.to(self.device))

    def setup_eval(self):
        if self._global_rank() == 0:
            super().setup_eval()

    def _global_rank(self) -> int:
        return torch.distributed.get_rank() if torch.distributed.is_initialized() else self.local_rank

    def next_train(self, step: int):
        ray_bundle, batch = super().next_train(step)
        if "ray_group" in batch:
            if ray_bundle.metadata is None:
                ray_bundle.metadata = {}
            ray_bundle.metadata["ray_group"] = batch["ray_group"].to(ray_bundle.origins.device)[:, None]
        _attach_camera_pose(ray_bundle, self.train_dataset.cameras, with_frame=True)
        return ray_bundle, batch

    def next_eval(self, step: int):
        ray_bundle, batch = super().next_eval(step)
        _attach_camera_pose(ray_bundle, self.eval_dataset.cameras, with_frame=False)
        return ray_bundle, batch

"""Data manager for talking-head models: the vanilla one, with each training ray's region group attached.

The model only receives the ray bundle, so what it needs from the batch is copied into
`RayBundle.metadata`: the region sampler's `ray_group` (AE-NeRF decides per ray which field renders it;
rays without a group, at evaluation, in the viewer and when rendering, go through both fields), and
each ray's camera pose and training-frame index (SSP-NeRF's torso deformation is conditioned on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from aenerf_ns.aenerf.region_sampler import RegionPixelSamplerConfig
from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.data.talking_head_dataset import TalkingHeadDataset
from aenerf_ns.ssp_nerf.semantic_sampler import SemanticPixelSamplerConfig


@dataclass
class TalkingHeadDataManagerConfig(VanillaDataManagerConfig):
    """Talking-head data: the `talking-head` dataparser and the region-wise ray sampler."""

    _target: type = field(default_factory=lambda: TalkingHeadDataManager)
    dataparser: TalkingHeadDataParserConfig = field(default_factory=TalkingHeadDataParserConfig)
    """Where the talking-head dataset is read from."""
    pixel_sampler: RegionPixelSamplerConfig = field(default_factory=RegionPixelSamplerConfig)
    """Region-wise ray sampling (audio region, the rest, and their overlap)."""


@dataclass
class SemanticDataManagerConfig(TalkingHeadDataManagerConfig):
    """Talking-head data with semantic-aware dynamic ray sampling (SSP-NeRF)."""

    _target: type = field(default_factory=lambda: TalkingHeadDataManager)
    pixel_sampler: SemanticPixelSamplerConfig = field(default_factory=SemanticPixelSamplerConfig)
    """Rays per parsing class by each class's running loss."""


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

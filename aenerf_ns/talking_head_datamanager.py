"""Data manager for talking-head models: the vanilla one, with each training ray's region group attached.

The model decides per ray which field renders it, but only receives the ray bundle, so the region
sampler's `ray_group` is copied into `RayBundle.metadata`. Rays without a group (evaluation, the viewer,
rendering) are rendered by both fields and blended, as at inference in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from aenerf_ns.dataparsers.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.region_sampler import RegionPixelSamplerConfig
from aenerf_ns.talking_head_dataset import TalkingHeadDataset


@dataclass
class TalkingHeadDataManagerConfig(VanillaDataManagerConfig):
    """Talking-head data: the `talking-head` dataparser and the region-wise ray sampler."""

    _target: type = field(default_factory=lambda: TalkingHeadDataManager)
    dataparser: TalkingHeadDataParserConfig = field(default_factory=TalkingHeadDataParserConfig)
    """Where the talking-head dataset is read from."""
    pixel_sampler: RegionPixelSamplerConfig = field(default_factory=RegionPixelSamplerConfig)
    """Region-wise ray sampling (audio region, the rest, and their overlap)."""


class TalkingHeadDataManager(VanillaDataManager[TalkingHeadDataset]):
    """See the module docstring."""

    def next_train(self, step: int):
        ray_bundle, batch = super().next_train(step)
        if "ray_group" in batch:
            if ray_bundle.metadata is None:
                ray_bundle.metadata = {}
            ray_bundle.metadata["ray_group"] = batch["ray_group"].to(ray_bundle.origins.device)[:, None]
        return ray_bundle, batch

"""Data manager for models that render whole frames (Gaussian splatting): nerfstudio's full-image manager on
talking-head data.

Each training step gets one camera and its frame with everything `TalkingHeadDataset` adds (parsing map, audio-region
mask, background plate). The camera keeps the dataparser's metadata (`audio_index`, `identity`), so the model finds
the frame's audio exactly as the ray-based methods do, plus nerfstudio's `cam_idx` (the training-frame index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig

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


class TalkingHeadImageDataManager(FullImageDatamanager[TalkingHeadDataset]):
    """See the module docstring."""

"""Region-wise ray sampling: rays of the audio region, rays of the rest, and an overlap of both.

Each training batch draws `audio_region_fraction` of its rays from the audio-related region (lower face
and mouth) and the rest from everywhere else. Of each set, `overlap_fraction` (the paper's epsilon) is
marked as overlap: those rays go through both fields and are blended by the predicted masks, the others
only through their own region's field. The group of every ray is returned as `ray_group`.

The paper draws the batch uniformly and then splits it; the lower face covers only a few percent of a
portrait, so a uniform draw would leave the audio field a handful of rays per batch. Drawing a fixed
fraction from the region keeps its supervision steady; `audio_region_fraction=-1` restores the plain
uniform draw.

The open mouth is smaller still (a tenth of the lower face at its widest), and it is where a talking head
is judged: `mouth_fraction` of the batch comes from the mouth area (the mouth interior and the lips around
it, `mouth_key`) of the frames whose mouth is open, out of the audio region's share. Without it the mouth
interior gets a few rays per batch and the rendered mouth opens a fraction as far as the speaker's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from torch import Tensor

from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY, OVERLAP
from aenerf_ns.data.pixel_gathering import gather_pixels, per_pixel_map


@dataclass
class RegionPixelSamplerConfig(PixelSamplerConfig):
    """Region-wise ray sampler for dual-field talking-head models."""

    _target: type = field(default_factory=lambda: RegionPixelSampler)
    overlap_fraction: float = 0.4
    """Fraction of each region's rays sent through both fields (the paper's epsilon)."""
    audio_region_fraction: float = 0.25
    """Fraction of the batch drawn from the audio region; -1 draws uniformly over the image instead."""
    region_key: str = "audio_region"
    """Batch key of the per-pixel boolean audio-region map."""
    mouth_fraction: float = 0.0
    """Fraction of the batch drawn from the open mouth and its lips (taken from the audio region's share)."""
    mouth_key: str = "mouth_area"
    """Batch key of the per-pixel boolean mouth-area map (used when `mouth_fraction` > 0)."""


def _draw(candidates: Int[Tensor, "M 3"], count: int, generator: torch.Generator | None) -> Int[Tensor, "count 3"]:
    if count == 0:
        return candidates[:0]
    picks = torch.randint(0, candidates.shape[0], (count,), generator=generator)
    return candidates[picks]


class RegionPixelSampler(PixelSampler):
    """See the module docstring. Works on image batches of equal size (tensor batches)."""

    config: RegionPixelSamplerConfig

    def __init__(self, config: RegionPixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        if not 0.0 <= config.overlap_fraction <= 1.0:
            raise ValueError(f"overlap_fraction must be within [0, 1], got {config.overlap_fraction}")
        if config.audio_region_fraction != -1 and not 0.0 <= config.audio_region_fraction <= 1.0:
            raise ValueError(f"audio_region_fraction must be within [0, 1] or -1, got {config.audio_region_fraction}")
        if config.mouth_fraction and not 0.0 <= config.mouth_fraction <= max(config.audio_region_fraction, 0.0):
            raise ValueError(
                f"mouth_fraction must be within [0, audio_region_fraction] (the mouth is part of the audio region), "
                f"got {config.mouth_fraction} with audio_region_fraction {config.audio_region_fraction}"
            )
        self.generator: torch.Generator | None = None

    def sample_regions(
        self, region: torch.Tensor, num_rays: int, mouth: torch.Tensor | None = None
    ) -> tuple[Int[Tensor, "num_rays 3"], Int[Tensor, " num_rays"]]:
        """Pixel indices (image, y, x) and ray groups for a boolean region map of shape (N, H, W), with
        `mouth_fraction` of the rays from the `mouth` map's pixels inside the region, when there are any."""
        region = region.cpu().bool()
        n_img, h, w = region.shape
        if self.config.audio_region_fraction == -1:
            flat = torch.randint(0, n_img * h * w, (num_rays,), generator=self.generator)
            idx = torch.stack([flat // (h * w), (flat // w) % h, flat % w], -1)
            in_region = region[idx[:, 0], idx[:, 1], idx[:, 2]]
        else:
            inside = torch.nonzero(region)
            n_in = round(self.config.audio_region_fraction * num_rays) if inside.shape[0] else 0
            n_out = num_rays - n_in
            outside_parts, got = [], 0
            for _ in range(100):  # rejection sampling: the audio region is a small part of the image
                flat = torch.randint(0, n_img * h * w, (max(2 * (n_out - got), 64),), generator=self.generator)
                cand = torch.stack([flat // (h * w), (flat // w) % h, flat % w], -1)
                cand = cand[~region[cand[:, 0], cand[:, 1], cand[:, 2]]][: n_out - got]
                outside_parts.append(cand)
                got += cand.shape[0]
                if got >= n_out:
                    break
            if got < n_out:
                raise ValueError("the audio region covers (almost) every pixel: no rays left for the other field")
            mouth_pixels = inside[:0]
            if mouth is not None and self.config.mouth_fraction > 0:
                mouth_pixels = torch.nonzero(mouth.cpu().bool() & region)
            n_mouth = min(round(self.config.mouth_fraction * num_rays), n_in) if mouth_pixels.shape[0] else 0
            drawn = [_draw(mouth_pixels, n_mouth, self.generator), _draw(inside, n_in - n_mouth, self.generator)]
            idx = torch.cat(drawn + outside_parts)
            in_region = torch.zeros(num_rays, dtype=torch.bool)
            in_region[:n_in] = True
        groups = torch.where(in_region, AUDIO_ONLY, OTHER_ONLY)
        for member in (in_region, ~in_region):
            positions = torch.nonzero(member)[:, 0]
            num_overlap = round(self.config.overlap_fraction * positions.shape[0])
            chosen = positions[torch.randperm(positions.shape[0], generator=self.generator)[:num_overlap]]
            groups[chosen] = OVERLAP
        return idx, groups

    def collate_image_dataset_batch(self, batch: dict, num_rays_per_batch: int, keep_full_image: bool = False):
        region = per_pixel_map(batch, self.config.region_key, "region")
        mouth = per_pixel_map(batch, self.config.mouth_key, "region") if self.config.mouth_fraction > 0 else None
        indices, groups = self.sample_regions(region, num_rays_per_batch, mouth)
        collated = gather_pixels(batch, indices, keep_full_image)
        collated["ray_group"] = groups
        return collated

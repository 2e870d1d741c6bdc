"""Semantic-aware dynamic ray sampling (SSP-NeRF): rays go where the photometric loss currently is.

Part of each batch (`uniform_fraction`) is drawn uniformly over all pixels, so large regions stay
covered; the rest is split over the parsing classes present in the images. There a class's share is its
running photometric loss (an exponential moving average of the mean per-ray squared error, fed back by
the model after every training step) relative to the others', with a floor so that no class starves;
inside a class, pixels are drawn uniformly. Small regions with high error, such as the mouth, thus get
far more rays than their area would give them, and the allocation follows training as regions improve.

The paper gives no formula; this one is ours (docs/ssp-nerf.md). Before any loss is known every class
gets the same loss-driven share. `semantic_aware=False` is the ablation: rays uniform over all pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from torch import Tensor

from aenerf_ns.data.parsing_labels import LABEL_NAMES
from aenerf_ns.data.pixel_gathering import gather_pixels, per_pixel_map


@dataclass
class SemanticPixelSamplerConfig(PixelSamplerConfig):
    """Semantic-aware dynamic ray sampling."""

    _target: type = field(default_factory=lambda: SemanticPixelSampler)
    semantic_aware: bool = True
    """Allocate rays to parsing classes by their running loss; False draws rays uniformly (ablation)."""
    uniform_fraction: float = 0.5
    """Part of each batch drawn uniformly over all pixels (keeps large regions covered); the rest by loss."""
    floor: float = 0.04
    """Smallest share of the loss-driven part any class present in the images receives."""
    momentum: float = 0.9
    """Weight of the past in the running per-class loss (exponential moving average)."""
    unbiased: bool = True
    """Weight each ray by its class's pixel share over its sampling share (`ray_weight`), so the photometric
    loss stays the full-image mean: more rays where the error is, without reweighting the regions."""
    label_key: str = "parsing"
    """Batch key of the per-pixel parsing label map."""


def allocate(shares: Float[Tensor, "K"], total: int) -> Int[Tensor, "K"]:
    """Integer counts summing to `total`, proportional to `shares` (largest remainders)."""
    exact = shares / shares.sum() * total
    counts = exact.floor().long()
    remainder = total - int(counts.sum())
    if remainder > 0:
        counts[torch.argsort(exact - counts, descending=True)[:remainder]] += 1
    return counts


class SemanticPixelSampler(PixelSampler):
    """See the module docstring. Works on image batches of equal size (tensor batches)."""

    config: SemanticPixelSamplerConfig

    def __init__(self, config: SemanticPixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        if not 0.0 <= config.floor * len(LABEL_NAMES) <= 1.0:
            raise ValueError(f"floor must be within [0, 1/{len(LABEL_NAMES)}], got {config.floor}")
        if not 0.0 <= config.momentum < 1.0:
            raise ValueError(f"momentum must be within [0, 1), got {config.momentum}")
        self.num_classes = len(LABEL_NAMES)
        self.class_loss = torch.ones(self.num_classes)
        """Running mean per-ray photometric loss of each class (all equal until the first update)."""
        self.updates = 0
        self.generator: torch.Generator | None = None
        self._pixels_key: tuple | None = None
        self._pixels: list[Tensor] = []
        self._area: Tensor | None = None

    # ------------------------------------------------------------------ feedback from the model
    def update(self, loss_sum: Float[Tensor, "K"], count: Float[Tensor, "K"]) -> None:
        """Fold one step's per-class summed loss and ray count into the running class losses."""
        loss_sum, count = loss_sum.detach().float().cpu(), count.detach().float().cpu()
        seen = count > 0
        mean = loss_sum[seen] / count[seen]
        m = self.config.momentum if self.updates else 0.0  # the first measurement replaces the prior
        self.class_loss[seen] = m * self.class_loss[seen] + (1.0 - m) * mean
        self.updates += 1

    def loss_shares(self, present: Tensor | None = None) -> Float[Tensor, "K"]:
        """Each class's share of the loss-driven part of a batch (zero for classes absent from the images)."""
        present = torch.ones(self.num_classes, dtype=torch.bool) if present is None else present.cpu()
        k = int(present.sum())
        if k == 0:
            raise ValueError("no parsing class is present in the images")
        loss = torch.where(present, self.class_loss.clamp_min(1e-12), torch.zeros(()))
        floor = min(self.config.floor, 1.0 / k)
        return torch.where(present, floor + (1.0 - floor * k) * loss / loss.sum(), torch.zeros(()))

    def shares(self, area: Tensor | None = None) -> Float[Tensor, "K"]:
        """Expected share of the next batch per class, given the classes' pixel fractions `area`
        (default: the last batch's images; equal areas before any batch)."""
        if area is None:
            area = self._area if self._area is not None else torch.full((self.num_classes,), 1.0 / self.num_classes)
        u = self.config.uniform_fraction
        return u * area + (1.0 - u) * self.loss_shares(area > 0)

    # ------------------------------------------------------------------ sampling
    def _class_pixels(self, labels: Tensor) -> list[Tensor]:
        """Flat pixel indices of every class, computed once per image batch (the batch is cached)."""
        key = (labels.data_ptr(), tuple(labels.shape))
        if key != self._pixels_key:
            flat = labels.reshape(-1).long()
            order = torch.argsort(flat, stable=True)
            counts = torch.bincount(flat, minlength=self.num_classes)[: self.num_classes]
            self._pixels = list(torch.split(order, counts.tolist()))
            self._pixels_key = key
            self._area = counts.float() / flat.numel()
        return self._pixels

    def sample_classes(
        self, labels: Int[Tensor, "N H W"], num_rays: int
    ) -> tuple[Int[Tensor, "R 3"], Int[Tensor, "R"]]:
        """Pixel indices (image, y, x) and their class for a batch of label maps."""
        labels = labels.cpu()
        n_img, h, w = labels.shape
        if not self.config.semantic_aware:
            flat = torch.randint(0, n_img * h * w, (num_rays,), generator=self.generator)
        else:
            pixels = self._class_pixels(labels)
            n_uniform = round(self.config.uniform_fraction * num_rays)
            counts = allocate(self.loss_shares(self._area > 0), num_rays - n_uniform)
            parts = [torch.randint(0, n_img * h * w, (n_uniform,), generator=self.generator)]
            parts += [
                p[torch.randint(0, len(p), (int(c),), generator=self.generator)]
                for p, c in zip(pixels, counts)
                if c > 0
            ]
            flat = torch.cat(parts)
        idx = torch.stack([flat // (h * w), (flat // w) % h, flat % w], -1)
        return idx, labels.reshape(-1)[flat].long()

    def collate_image_dataset_batch(self, batch: dict, num_rays_per_batch: int, keep_full_image: bool = False):
        labels = per_pixel_map(batch, self.config.label_key, "semantic")
        indices, classes = self.sample_classes(labels, num_rays_per_batch)
        collated = gather_pixels(batch, indices, keep_full_image)
        if self.config.semantic_aware and self.config.unbiased:
            area = self._area
            weights = area / self.shares(area).clamp_min(1e-12)
            collated["ray_weight"] = weights[classes][:, None].to(batch["image"].device)
        return collated

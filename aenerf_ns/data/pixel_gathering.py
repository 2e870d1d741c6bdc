"""Reading a batch's per-pixel entries at sampled pixels, as nerfstudio's pixel samplers return them.

Shared by every pixel sampler that chooses its own pixels (region-wise, semantic-aware) and then hands
the batch on in nerfstudio's collated form.
"""

from __future__ import annotations

from jaxtyping import Int
from torch import Tensor


def per_pixel_map(batch: dict, key: str, sampler: str) -> Tensor:
    """The batch's (N, H, W) map under `key`, which a sampler named `sampler` draws its pixels by."""
    if key not in batch:
        raise KeyError(
            f"the {sampler} sampler needs a per-pixel '{key}' map in each batch; use the talking-head dataset "
            "(TalkingHeadDataset) or a dataset that provides it"
        )
    return batch[key][..., 0]


def gather_pixels(batch: dict, indices: Int[Tensor, "R 3"], keep_full_image: bool = False) -> dict:
    """The batch's per-pixel entries at (image, y, x) `indices`, as nerfstudio's samplers return them:
    `indices` holds the dataset image index in its first column."""
    device = batch["image"].device
    c, y, x = indices[:, 0], indices[:, 1], indices[:, 2]
    collated = {k: v[c, y, x] for k, v in batch.items() if k != "image_idx" and v is not None}
    indices = indices.to(device)
    indices[:, 0] = batch["image_idx"].to(device)[c.to(device)]
    collated["indices"] = indices
    if keep_full_image:
        collated["full_image"] = batch["image"]
    return collated

"""Mask-blend of the two fields' samples, per ray group (the paper's Eq. 7).

Overlap rays: density is the sum of both fields' densities and colour (and parsing probabilities) the
mix of both fields' values weighted by their masks, normalised so the weights sum to one. Rays of one
region take that field's values unchanged.

`weighting="density-mask"` weighs each field's values by its mask times its own density at the sample, so a
field's colour counts only where that field holds matter: with the masks alone, a sample on one field's
surface takes colour from the other field too, where that field is empty and its colour was never fitted.
`weighting="masked-fields"` also weighs the densities by the (normalised) masks, so each field's matter exists only
inside its own region: a field's surface outside its region, never fitted there, cannot occlude the other's.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY

DENSITY_FLOOR = 1e-2
"""Added to each field's density in the "density-mask" and "masked-fields" colour weights, so samples where both
fields are empty mix by the masks."""


def blend_dual_samples(
    aa: dict[str, Tensor],
    ai: dict[str, Tensor],
    mask_aa: Float[Tensor, "R S 1"],
    mask_ai: Float[Tensor, "R S 1"],
    groups: Int[Tensor, " R"],
    weighting: Literal["mask", "density-mask", "masked-fields"] = "mask",
) -> dict[str, Tensor]:
    """Blend per-sample `density`, `rgb` and `probs` of the audio (aa) and the other (ai) field.

    Values of a field for rays it did not render may hold anything (zeros); they get zero weight.
    """
    if weighting not in ("mask", "density-mask", "masked-fields"):
        raise ValueError(f"unknown weighting {weighting!r}: use 'mask', 'density-mask' or 'masked-fields'")
    only_aa = (groups == AUDIO_ONLY)[:, None, None]
    only_ai = (groups == OTHER_ONLY)[:, None, None]
    share_aa, share_ai = mask_aa, mask_ai
    overlap_density = aa["density"] + ai["density"]
    if weighting == "masked-fields":
        share_aa = mask_aa / (mask_aa + mask_ai).clamp_min(1e-6)
        share_ai = 1.0 - share_aa
        overlap_density = share_aa * aa["density"] + share_ai * ai["density"]
    if weighting != "mask":
        # DENSITY_FLOOR keeps the weights the masks' where both fields are empty
        share_aa = (aa["density"] + DENSITY_FLOOR) * share_aa
        share_ai = (ai["density"] + DENSITY_FLOOR) * share_ai
    total = (share_aa + share_ai).clamp_min(1e-6)
    w_aa = torch.where(only_aa, 1.0, torch.where(only_ai, 0.0, share_aa / total))
    w_ai = 1.0 - w_aa
    density = torch.where(only_aa, aa["density"], torch.where(only_ai, ai["density"], overlap_density))
    return {
        "density": density,
        "rgb": w_aa * aa["rgb"] + w_ai * ai["rgb"],
        "probs": w_aa * aa["probs"] + w_ai * ai["probs"],
        "mask_aa": torch.where(only_ai, 0.0, mask_aa),
        "mask_ai": torch.where(only_aa, 0.0, mask_ai),
    }

"""Mask-blend of the two fields' samples, per ray group (the paper's Eq. 7).

Overlap rays: density is the sum of both fields' densities and colour (and parsing probabilities) the
mix of both fields' values weighted by their masks, normalised so the weights sum to one. Rays of one
region take that field's values unchanged.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY


def blend_dual_samples(
    aa: dict[str, Tensor],
    ai: dict[str, Tensor],
    mask_aa: Float[Tensor, "R S 1"],
    mask_ai: Float[Tensor, "R S 1"],
    groups: Int[Tensor, " R"],
) -> dict[str, Tensor]:
    """Blend per-sample `density`, `rgb` and `probs` of the audio (aa) and the other (ai) field.

    Values of a field for rays it did not render may hold anything (zeros); they get zero weight.
    """
    only_aa = (groups == AUDIO_ONLY)[:, None, None]
    only_ai = (groups == OTHER_ONLY)[:, None, None]
    total = (mask_aa + mask_ai).clamp_min(1e-6)
    w_aa = torch.where(only_aa, 1.0, torch.where(only_ai, 0.0, mask_aa / total))
    w_ai = 1.0 - w_aa
    density = torch.where(only_aa, aa["density"], torch.where(only_ai, ai["density"], aa["density"] + ai["density"]))
    return {
        "density": density,
        "rgb": w_aa * aa["rgb"] + w_ai * ai["rgb"],
        "probs": w_aa * aa["probs"] + w_ai * ai["probs"],
        "mask_aa": torch.where(only_ai, 0.0, mask_aa),
        "mask_ai": torch.where(only_aa, 0.0, mask_ai),
    }

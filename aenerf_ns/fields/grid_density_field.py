"""A proposal density field made of dense voxel grids: where along a ray the head is, at a few reads per point.

Proposal sampling only needs a coarse, position-only density (`proposal_sampling`). A head fills a small
box, so dense grids at a few resolutions (by default 32^3, 64^3 and 128^3, about 2.4 M values) cover it
without hashing; the density at a point is `exp` of the sum of the levels' trilinear reads. One `grid_sample`
per level replaces the hash grid plus MLP of nerfstudio's `HashMLPDensityField`, which on a CPU is the
larger part of a proposal pass. It works unchanged on CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.field_components.activations import trunc_exp
from torch import Tensor, nn


class GridDensityField(nn.Module):
    """Density from dense grids at several resolutions, zero outside the scene box."""

    def __init__(self, aabb: Float[Tensor, "2 3"], resolutions: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        if not resolutions or min(resolutions) < 2:
            raise ValueError(f"grid density field needs resolutions >= 2, got {resolutions}")
        self.register_buffer("aabb", aabb.clone().float())
        self.grids = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, r, r, r)) for r in resolutions)

    def density_fn(self, positions: Float[Tensor, "*batch 3"], times: Tensor | None = None) -> Tensor:
        """Density (*batch, 1) at world positions; the signature of nerfstudio's proposal density functions."""
        lo, hi = self.aabb[0], self.aabb[1]
        x = (positions - lo) / (hi - lo)
        inside = ((x >= 0.0) & (x <= 1.0)).all(-1, keepdim=True)
        grid = (x.reshape(1, -1, 1, 1, 3) * 2.0 - 1.0).to(self.grids[0].dtype)  # grid_sample's (x, y, z) order
        logit = sum(F.grid_sample(g, grid, mode="bilinear", align_corners=True) for g in self.grids)
        density = trunc_exp(logit.reshape(*positions.shape[:-1], 1) - 1.0)
        return density * inside

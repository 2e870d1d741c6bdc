"""Temporal audio smoothing: a frame's audio code is an attention-weighted mix of its neighbours' codes.

Per-frame audio codes jitter from frame to frame; mixing the codes of the frames within `radius` of the
current one, with weights a small 1D convolutional network predicts from those codes, gives smooth mouth
motion (the learned smoothing of audio-driven NeRFs). Neighbours never cross into another clip: indices
are clamped to the clip's own first and last rows of the feature table.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


def neighbour_rows(
    rows: Int[Tensor, "B"], radius: int, first: Int[Tensor, "T"], last: Int[Tensor, "T"]
) -> Int[Tensor, "B K"]:
    """Rows `row - radius .. row + radius` of the feature table, clamped to the row's own clip."""
    offsets = torch.arange(-radius, radius + 1, device=rows.device)
    neighbours = rows[:, None] + offsets[None]
    return torch.maximum(torch.minimum(neighbours, last[rows][:, None]), first[rows][:, None])


def clip_bounds(segments: Int[Tensor, "T"]) -> tuple[Int[Tensor, "T"], Int[Tensor, "T"]]:
    """For each table row, the first and last row of the clip it belongs to (clips are contiguous)."""
    n = segments.shape[0]
    idx = torch.arange(n, device=segments.device)
    starts = torch.ones(n, dtype=torch.bool, device=segments.device)
    starts[1:] = segments[1:] != segments[:-1]
    first = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), 0).values
    ends = torch.ones(n, dtype=torch.bool, device=segments.device)
    ends[:-1] = segments[1:] != segments[:-1]
    last = torch.flip(torch.cummin(torch.flip(torch.where(ends, idx, torch.full_like(idx, n)), [0]), 0).values, [0])
    return first, last


class AudioSmoother(nn.Module):
    """Codes of 2*radius+1 neighbouring frames -> one smoothed code (softmax weights from a 1D conv net)."""

    def __init__(self, code_dim: int, radius: int) -> None:
        super().__init__()
        self.radius = radius
        k = 2 * radius + 1
        self.scorer = nn.Sequential(
            nn.Conv1d(code_dim, 16, kernel_size=3, padding=1),
            nn.LeakyReLU(0.02),
            nn.Conv1d(16, 1, kernel_size=3, padding=1),
        )
        nn.init.zeros_(self.scorer[-1].weight)
        nn.init.zeros_(self.scorer[-1].bias)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        sigma = max(radius / 2.0, 0.5)
        # start as a Gaussian window centred on the current frame; training reshapes it
        self.position_logits = nn.Parameter(-0.5 * (offsets / sigma) ** 2)
        self.window = k

    def forward(self, codes: Float[Tensor, "B K code"]) -> tuple[Float[Tensor, "B code"], Float[Tensor, "B K"]]:
        weights = torch.softmax(self.scorer(codes.transpose(1, 2))[:, 0] + self.position_logits, dim=-1)
        return torch.einsum("bk,bkc->bc", weights, codes), weights

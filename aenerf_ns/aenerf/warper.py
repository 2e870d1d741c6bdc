"""Audio-aware image warper: corrects where a sample point lands in each reference view.

A talking face moves between the reference frame and the target frame, so the plain projection of a
point reads the wrong pixel. The warper (three fully connected layers, ReLU between) looks at the point,
the target audio and view direction, and the reference's audio and view direction, and predicts a 2D
offset in pixels added to the projected coordinate. The last layer starts at zero so training begins
from the plain projection; `offset_length_loss` keeps offsets short.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class Warper(nn.Module):
    """(x, a, a_ref_i, d, d_ref_i) -> offset (du, dv) in pixels, for every point and reference view.

    The first layer acts on the concatenated inputs; it is computed as a sum of per-point, per-reference
    and per-(point, reference) parts, which is the same linear map without materialising the
    concatenation for every point and reference.
    """

    def __init__(self, position_dim: int, audio_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.audio_dim = audio_dim
        self.point_in = nn.Linear(position_dim + 3 + audio_dim, hidden_dim)
        self.reference_direction_in = nn.Linear(3, hidden_dim, bias=False)
        self.reference_audio_in = nn.Linear(audio_dim, hidden_dim, bias=False) if audio_dim else None
        self.net = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, 2),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self,
        position: Float[Tensor, "P Dx"],
        audio: Float[Tensor, "P A"] | None,
        reference_audio: Float[Tensor, "*P L A"] | None,
        direction: Float[Tensor, "P 3"],
        reference_direction: Float[Tensor, "P L 3"],
    ) -> Float[Tensor, "P L 2"]:
        """Offsets; `reference_audio` is per point (P, L, A) or shared by all points (L, A)."""
        point = [position, direction]
        hidden = self.reference_direction_in(reference_direction)
        if self.audio_dim > 0:
            if audio is None or reference_audio is None:
                raise ValueError("this warper is audio-aware: pass target and reference audio")
            point.append(audio)
            hidden = hidden + self.reference_audio_in(reference_audio)
        hidden = hidden + self.point_in(torch.cat(point, -1))[:, None]
        return self.net(hidden)


def offset_length_loss(offsets: Float[Tensor, "P L 2"]) -> Tensor:
    """Mean Euclidean length of the offsets over points and references (the paper's L_o)."""
    if offsets.numel() == 0:
        return offsets.sum()
    return torch.sqrt((offsets**2).sum(-1) + 1e-12).mean()

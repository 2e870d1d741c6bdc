"""A direct target for the audio code: it must tell how far the mouth is open.

The photometric loss reaches the audio code only through the few rays (or pixels) of a small mouth, so
the code can settle on what varies most in the audio (loudness, the voice) rather than the mouth's shape,
and the rendered mouth then opens a fraction as far as the speaker's. A linear read-out of each frame's code
is trained to predict that frame's mouth opening (standardised per identity, from the parsing maps:
`data.mouth_track`), so the code carries the opening in a form the fields can use. The read-out is linear on
purpose: whatever it reads, the fields' first layer can read too.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


def standardised_per_identity(values: Float[Tensor, "n"], identities: Tensor) -> Float[Tensor, "n"]:
    """`values` minus their identity's mean, over their identity's standard deviation (1 when it is 0)."""
    out = torch.zeros_like(values)
    for k in torch.unique(identities).tolist():
        sel = identities == k
        v = values[sel]
        std = v.std(unbiased=False) if v.numel() > 1 else v.new_tensor(0.0)
        out[sel] = (v - v.mean()) / (std if std > 1e-8 else 1.0)
    return out


class MouthShapeHead(nn.Module):
    """Audio code -> predicted (standardised) mouth opening, and the squared error against the truth."""

    def __init__(self, code_dim: int) -> None:
        super().__init__()
        self.readout = nn.Linear(code_dim, 1)

    def forward(self, codes: Float[Tensor, "*batch code"]) -> Float[Tensor, "*batch"]:
        return self.readout(codes)[..., 0]

    def loss(self, codes: Float[Tensor, "B code"], target: Float[Tensor, "B"]) -> Tensor:
        """Mean squared error of the predicted openings of `codes` against `target`."""
        return ((self(codes) - target) ** 2).mean()

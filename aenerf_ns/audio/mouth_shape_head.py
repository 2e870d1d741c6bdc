"""A direct target for the audio code: it must tell how far the mouth is open.

The photometric loss reaches the audio code only through the few rays (or pixels) of a small mouth, so
the code can settle on what varies most in the audio (loudness, the voice) rather than the mouth's shape,
and the rendered mouth then opens a fraction as far as the speaker's. A linear read-out of each frame's code
is trained to predict that frame's mouth opening (standardised per identity, from the parsing maps:
`data.mouth_track`), so the code carries the opening in a form the fields can use. The read-out is linear on
purpose: whatever it reads, the fields' first layer can read too.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor, nn


def standardised(values: Float[Tensor, "n"]) -> Float[Tensor, "n"]:
    """`values` minus their mean, over their standard deviation (left unscaled when it is 0)."""
    std = values.std(unbiased=False) if values.numel() > 1 else values.new_tensor(0.0)
    return (values - values.mean()) / (std if std > 1e-8 else 1.0)


class MouthShapeHead(nn.Module):
    """Audio code -> predicted (standardised) mouth opening."""

    def __init__(self, code_dim: int) -> None:
        super().__init__()
        self.readout = nn.Linear(code_dim, 1)

    def forward(self, codes: Float[Tensor, "*batch code"]) -> Float[Tensor, "*batch"]:
        return self.readout(codes)[..., 0]

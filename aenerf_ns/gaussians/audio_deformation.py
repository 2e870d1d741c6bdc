"""How the audio-region Gaussians move with speech: per-Gaussian offsets from the canonical state, given audio.

AE-NeRF gives the audio-associated part of the face (lower face, mouth interior) a field of its own that sees the
audio, and the rest a field that does not. In Gaussian form the split is over Gaussians: those of the audio region
are deformed by this network every frame, the others never see audio (they follow only the head pose, through
`model_components/torso_deformation`). For each audio-region Gaussian, from its canonical centre
(frequency-encoded) and the frame's audio code, an MLP predicts

    (d_position, d_rotation, d_log_scale, d_opacity_logit, d_colour_logit)

The position offset is bounded (`max_offset * tanh`); the rotation offset is added to the (unnormalised)
quaternion. The output layer starts at zero, so training begins from the canonical, still face.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor, nn

from aenerf_ns.field_components.mlp import mlp

OFFSET_SIZES = {"position": 3, "rotation": 4, "log_scale": 3, "opacity": 1, "color": 3}
"""What the network predicts per Gaussian, and how many numbers each takes."""


@dataclass
class GaussianOffsets:
    """One frame's change of some Gaussians from their canonical state."""

    position: Float[Tensor, "M 3"]
    """Added to the centre (head units)."""
    rotation: Float[Tensor, "M 4"]
    """Added to the quaternion before it is normalised."""
    log_scale: Float[Tensor, "M 3"]
    """Added to the log standard deviations."""
    opacity: Float[Tensor, "M 1"]
    """Added to the opacity logit."""
    color: Float[Tensor, "M 3"]
    """Added to the colour logits."""


class AudioDeformation(nn.Module):
    """(canonical centres, audio code) -> `GaussianOffsets` of the audio-region Gaussians."""

    def __init__(
        self,
        audio_dim: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_frequencies: int = 6,
        max_offset: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoding = NeRFEncoding(
            in_dim=3, num_frequencies=num_frequencies, min_freq_exp=0.0, max_freq_exp=num_frequencies - 1.0,
            include_input=True,
        )  # fmt: skip
        self.net = mlp(self.encoding.get_out_dim() + audio_dim, hidden_dim, num_layers, sum(OFFSET_SIZES.values()))
        last = self.net[-1]
        nn.init.zeros_(last.weight)  # the canonical face until the audio is learned
        nn.init.zeros_(last.bias)
        self.audio_dim = audio_dim
        self.max_offset = max_offset

    def forward(self, positions: Float[Tensor, "M 3"], audio_code: Float[Tensor, "1 code"]) -> GaussianOffsets:
        if audio_code.shape[-1] != self.audio_dim:
            raise ValueError(f"audio code has {audio_code.shape[-1]} values, the deformation expects {self.audio_dim}")
        inputs = torch.cat([self.encoding(positions), audio_code.expand(len(positions), -1)], -1)
        parts = dict(zip(OFFSET_SIZES, self.net(inputs).split(list(OFFSET_SIZES.values()), -1)))
        parts["position"] = self.max_offset * torch.tanh(parts["position"])
        return GaussianOffsets(**parts)

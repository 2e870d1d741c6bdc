"""Torso deformation (SSP-NeRF's, also moving aenerf-gs's torso Gaussians): head and torso in one model.

Datasets are in head coordinates: the head stays still and the camera moves. The torso does not turn
with the head, so in these coordinates it moves whenever the head does, which one static field cannot
represent (two-NeRF systems give the torso its own field and misalign at the neck). Points are therefore
moved by a learned offset before the field is evaluated (or, for Gaussians, before they are splatted):

    x' = x + gate(x) * max_offset * tanh(MLP(enc(x), pose - mean_pose, latent))

- `pose` is the frame's camera-to-head transform (3x4, which is exactly the head pose relative to the
  static camera and torso), relative to the mean training pose: zero for the viewer's free camera;
- `latent` is a learned per-training-frame code for motion the pose does not explain (breathing,
  shrugs); frames without one (held-out frames, new audio) use the mean code;
- `gate` is a smooth step that is 1 below the jaw and 0 in the head (`gate_height`, head units), so the
  head, which head coordinates already hold still, is not deformed. The paper does not say how the
  torso is told apart; a fixed height gate is our choice (docs/ssp-nerf.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor, nn

from aenerf_ns.field_components.mlp import mlp


class TorsoDeformation(nn.Module):
    """Offsets for sample points below the head, conditioned on head pose and a per-frame latent code."""

    def __init__(
        self,
        num_frames: int,
        latent_dim: int = 8,
        hidden_dim: int = 64,
        num_layers: int = 3,
        num_frequencies: int = 4,
        max_offset: float = 0.5,
        gate_height: float = -1.0,
        gate_softness: float = 0.1,
    ):
        super().__init__()
        self.encoding = NeRFEncoding(
            in_dim=3, num_frequencies=num_frequencies, min_freq_exp=0.0, max_freq_exp=num_frequencies - 1.0,
            include_input=True,
        )  # fmt: skip
        self.latents = nn.Embedding(max(num_frames, 1), latent_dim)
        nn.init.normal_(self.latents.weight, std=0.01)
        self.net = mlp(self.encoding.get_out_dim() + 12 + latent_dim, hidden_dim, num_layers, 3)
        last = self.net[-1]
        nn.init.zeros_(last.weight)  # start as the identity: no deformation until the data asks for one
        nn.init.zeros_(last.bias)
        self.max_offset = max_offset
        self.gate_height = gate_height
        self.gate_softness = gate_softness

    def gate(self, positions: Float[Tensor, "P 3"]) -> Float[Tensor, "P 1"]:
        """1 well below the jaw, 0 in the head."""
        return torch.sigmoid((self.gate_height - positions[:, 1:2]) / self.gate_softness)

    def frame_latents(self, frames: Tensor | None, count: int) -> Float[Tensor, "count latent"]:
        """Per-ray latent codes: the training frame's own, or the mean code where `frames` is None."""
        if frames is None:
            return self.latents.weight.mean(0, keepdim=True).expand(count, -1)
        return self.latents(frames.reshape(-1).long().clamp(0, self.latents.num_embeddings - 1))

    def forward(
        self,
        positions: Float[Tensor, "P 3"],
        relative_pose: Float[Tensor, "P 12"],
        latents: Float[Tensor, "P latent"],
    ) -> Float[Tensor, "P 3"]:
        raw = self.net(torch.cat([self.encoding(positions), relative_pose, latents], -1))
        return self.gate(positions) * self.max_offset * torch.tanh(raw)


@dataclass
class TorsoDeformationSettings:
    """The torso-deformation options of a model config (SSP-NeRF's and aenerf-gs's take them by inheriting)."""

    use_torso_deformation: bool = True
    """Deform the torso by head pose and a per-frame latent; False is the "w/o torso deformation" ablation."""
    torso_latent_dim: int = 8
    """Size of the per-frame latent code of the torso deformation."""
    torso_hidden_dim: int = 64
    """Width of the torso deformation's MLP."""
    torso_max_offset: float = 0.5
    """Largest torso offset in head units (about 6 cm)."""
    torso_gate_height: float = -1.0
    """Height (head units, y) below which points count as torso; the head above it is never deformed."""

    def torso_deformation(self, num_frames: int) -> TorsoDeformation | None:
        """The deformation these settings describe, with a latent per training frame (None when switched off)."""
        if not self.use_torso_deformation:
            return None
        return TorsoDeformation(
            num_frames,
            latent_dim=self.torso_latent_dim,
            hidden_dim=self.torso_hidden_dim,
            max_offset=self.torso_max_offset,
            gate_height=self.torso_gate_height,
        )

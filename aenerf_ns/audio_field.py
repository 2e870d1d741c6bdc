"""Audio-conditioned radiance field: (position, direction, audio code) -> density, colour, parsing logits."""

from __future__ import annotations

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import NeRFEncoding, SHEncoding
from torch import Tensor, nn


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int) -> nn.Sequential:
    """`num_layers` hidden ReLU layers of width `hidden_dim`, then a linear output layer."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class AudioConditionedField(nn.Module):
    """MLP radiance field over positional encodings, optionally conditioned on an audio code.

    Positions are normalised to [0, 1] by the scene box before encoding. When `audio_code_dim` is 0 the
    field ignores audio entirely (an audio-independent field).
    """

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        num_semantic_classes: int,
        audio_code_dim: int = 32,
        hidden_dim: int = 128,
        num_layers: int = 4,
        geo_feat_dim: int = 32,
        num_frequencies: int = 8,
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.audio_code_dim = audio_code_dim
        self.position_encoding = NeRFEncoding(
            in_dim=3,
            num_frequencies=num_frequencies,
            min_freq_exp=0.0,
            max_freq_exp=num_frequencies - 1,
            include_input=True,
        )
        self.direction_encoding = SHEncoding(levels=3, implementation="torch")
        pos_dim = self.position_encoding.get_out_dim()
        self.base = mlp(pos_dim + audio_code_dim, hidden_dim, num_layers, 1 + geo_feat_dim)
        dir_dim = self.direction_encoding.get_out_dim()
        self.color_head = mlp(geo_feat_dim + dir_dim + audio_code_dim, hidden_dim // 2, 1, 3)
        self.semantic_head = mlp(geo_feat_dim, hidden_dim // 2, 1, num_semantic_classes)

    def forward(
        self,
        positions: Float[Tensor, "*batch 3"],
        directions: Float[Tensor, "*batch 3"],
        audio_code: Float[Tensor, "*batch code"] | None = None,
    ) -> dict[str, Tensor]:
        """Density (>= 0), RGB in [0, 1] and unnormalised parsing logits at each sample."""
        lo, hi = self.aabb[0], self.aabb[1]
        x = (positions - lo) / (hi - lo)
        pos = self.position_encoding(x * 2.0 - 1.0)
        if self.audio_code_dim > 0:
            if audio_code is None:
                raise ValueError("this field is audio-conditioned: pass an audio code")
            pos = torch.cat([pos, audio_code], -1)
        h = self.base(pos)
        inside = ((x >= 0.0) & (x <= 1.0)).all(-1, keepdim=True)
        density = nn.functional.softplus(h[..., :1] - 1.0) * inside
        geo = h[..., 1:]
        d = self.direction_encoding(directions)  # the torch SH encoding takes unit vectors
        color_in = [geo, d] + ([audio_code] if self.audio_code_dim > 0 else [])
        rgb = torch.sigmoid(self.color_head(torch.cat(color_in, -1)))
        return {"density": density, "rgb": rgb, "semantics": self.semantic_head(geo)}

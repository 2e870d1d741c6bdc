"""Radiance field of one face region: (x, d, [audio code], [aggregated reference feature]) -> sample values.

AE-NeRF's two fields are both instances: the audio-associated field F_aa receives the audio code and the
aggregated reference feature f~, the audio-independent field F_ai receives f~ only (`audio_code_dim=0`
and it refuses audio). Each predicts density, colour and parsing logits over the foreground classes; the
parsing branch gives the region masks that blend the two fields.

Two position encodings are selectable: the paper's frequency (positional) encoding with a deep MLP, or
a multiresolution hash grid (Instant-NGP) with a shallow MLP, which converges in far fewer steps. The
hash grid uses tiny-cuda-nn when installed and nerfstudio's pure-torch grid otherwise.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding, NeRFEncoding, SHEncoding
from torch import Tensor, nn

from aenerf_ns.models.mlp import mlp

PositionEncoding = Literal["positional", "hashgrid"]


def hash_grid_implementation() -> Literal["tcnn", "torch"]:
    """tiny-cuda-nn when it is importable and a GPU is present, else the pure-torch hash grid."""
    if not torch.cuda.is_available():
        return "torch"
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return "torch"
    return "tcnn"


class AudioConditionedField(nn.Module):
    """Density, RGB and parsing logits over a position encoding plus optional audio and feature inputs.

    Positions are normalised to [0, 1] by the scene box; density is zero outside it. With
    `audio_code_dim=0` the field has no audio input at all (an audio-independent field).
    """

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        num_semantic_classes: int,
        audio_code_dim: int = 32,
        condition_dim: int = 0,
        hidden_dim: int = 128,
        num_layers: int = 4,
        geo_feat_dim: int = 32,
        num_frequencies: int = 8,
        encoding: PositionEncoding = "positional",
        hash_levels: int = 16,
        hash_log2_size: int = 19,
        hash_max_resolution: int = 1024,
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.audio_code_dim = audio_code_dim
        self.condition_dim = condition_dim
        self.encoding = encoding
        if encoding == "positional":
            self.position_encoding = NeRFEncoding(
                in_dim=3,
                num_frequencies=num_frequencies,
                min_freq_exp=0.0,
                max_freq_exp=num_frequencies - 1,
                include_input=True,
            )
        elif encoding == "hashgrid":
            self.position_encoding = HashEncoding(
                num_levels=hash_levels,
                min_res=16,
                max_res=hash_max_resolution,
                log2_hashmap_size=hash_log2_size,
                features_per_level=2,
                implementation=hash_grid_implementation(),
            )
        else:
            raise ValueError(f"unknown position encoding {encoding!r}: use 'positional' or 'hashgrid'")
        self.direction_encoding = SHEncoding(levels=3, implementation="torch")
        pos_dim = self.position_encoding.get_out_dim()
        self.base = mlp(pos_dim + audio_code_dim + condition_dim, hidden_dim, num_layers, 1 + geo_feat_dim)
        dir_dim = self.direction_encoding.get_out_dim()
        self.color_head = mlp(geo_feat_dim + dir_dim + audio_code_dim, hidden_dim // 2, 1, 3)
        self.semantic_head = mlp(geo_feat_dim, hidden_dim // 2, 1, num_semantic_classes)

    def encode_position(self, positions: Float[Tensor, "*batch 3"]) -> tuple[Tensor, Tensor]:
        """Encoded positions and the inside-the-box mask."""
        lo, hi = self.aabb[0], self.aabb[1]
        x = (positions - lo) / (hi - lo)
        inside = ((x >= 0.0) & (x <= 1.0)).all(-1, keepdim=True)
        if self.encoding == "positional":
            return self.position_encoding(x * 2.0 - 1.0), inside
        flat = x.clamp(0.0, 1.0).reshape(-1, 3)
        return self.position_encoding(flat).reshape(*x.shape[:-1], -1).float(), inside

    def forward(
        self,
        positions: Float[Tensor, "*batch 3"],
        directions: Float[Tensor, "*batch 3"],
        audio_code: Float[Tensor, "*batch code"] | None = None,
        condition: Float[Tensor, "*batch cond"] | None = None,
    ) -> dict[str, Tensor]:
        """Density (>= 0), RGB in [0, 1] and unnormalised parsing logits at each sample."""
        pos, inside = self.encode_position(positions)
        inputs = [pos]
        if self.audio_code_dim > 0:
            if audio_code is None:
                raise ValueError("this field is audio-conditioned: pass an audio code")
            inputs.append(audio_code)
        elif audio_code is not None:
            raise ValueError("this field is audio-independent: it must not receive audio")
        if self.condition_dim > 0:
            if condition is None:
                raise ValueError("this field is conditioned on reference features: pass them")
            inputs.append(condition)
        h = self.base(torch.cat(inputs, -1))
        density = nn.functional.softplus(h[..., :1] - 1.0) * inside
        geo = h[..., 1:]
        d = self.direction_encoding(directions)  # the torch SH encoding takes unit vectors
        color_in = [geo, d] + ([audio_code] if self.audio_code_dim > 0 else [])
        rgb = torch.sigmoid(self.color_head(torch.cat(color_in, -1)))
        return {"density": density, "rgb": rgb, "semantics": self.semantic_head(geo)}

"""Radiance field of one face region: (x, d, [audio code], [aggregated reference feature]) -> sample values.

AE-NeRF's two fields are both instances: the audio-associated field F_aa receives the audio code and the
aggregated reference feature f~, the audio-independent field F_ai receives f~ only (`audio_code_dim=0`
and it refuses audio). Each predicts density, colour and parsing logits over the foreground classes; the
parsing branch gives the region masks that blend the two fields.

Three position encodings are selectable: the paper's frequency (positional) encoding with a deep MLP, a
multiresolution hash grid (Instant-NGP) with a shallow MLP, or multiresolution tri-planes
(`triplane_encoding`) with a shallow MLP. The grids converge in far fewer steps than the frequency encoding.
The hash grid uses tiny-cuda-nn when installed and nerfstudio's pure-torch grid otherwise.

Inputs that are the same for every sample of a ray (its direction, audio code, a per-ray reference feature)
may be passed once per ray: the first layer that reads them is split, so their part is computed once per
ray and added to each sample's, the same linear map without repeating them for every sample.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import HashEncoding, NeRFEncoding, SHEncoding
from torch import Tensor, nn

from aenerf_ns.field_components.mlp import mlp
from aenerf_ns.field_components.triplane_encoding import TriplaneEncoding

PositionEncoding = Literal["positional", "hashgrid", "triplane"]


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
        triplane_resolutions: tuple[int, ...] = (64, 128, 256),
        triplane_features: int = 4,
        audio_attention: bool = False,
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
        elif encoding == "triplane":
            self.position_encoding = TriplaneEncoding(triplane_resolutions, triplane_features)
        else:
            raise ValueError(f"unknown position encoding {encoding!r}: use 'positional', 'hashgrid' or 'triplane'")
        self.direction_encoding = SHEncoding(levels=3, implementation="torch")
        pos_dim = self.position_encoding.get_out_dim()
        self.base = mlp(pos_dim + audio_code_dim + condition_dim, hidden_dim, num_layers, 1 + geo_feat_dim)
        dir_dim = self.direction_encoding.get_out_dim()
        self.color_head = mlp(geo_feat_dim + dir_dim + audio_code_dim, hidden_dim // 2, 1, 3)
        self.semantic_head = mlp(geo_feat_dim, hidden_dim // 2, 1, num_semantic_classes)
        self.audio_attention = None
        if audio_attention and audio_code_dim > 0:
            # per-point weights on each audio-code channel; zero-initialised, so they start at 1 (plain conditioning)
            self.audio_attention = nn.Linear(pos_dim, audio_code_dim)
            nn.init.zeros_(self.audio_attention.weight)
            nn.init.zeros_(self.audio_attention.bias)

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
        directions: Float[Tensor, "*batch 3"] | Float[Tensor, "*rays 3"],
        audio_code: Float[Tensor, "*batch code"] | Float[Tensor, "*rays code"] | None = None,
        condition: Float[Tensor, "*batch cond"] | Float[Tensor, "*rays cond"] | None = None,
    ) -> dict[str, Tensor]:
        """Density (>= 0), RGB in [0, 1] and unnormalised parsing logits at each sample.

        `directions`, `audio_code` and `condition` are either per sample (the shape of `positions`) or per
        ray: one dimension fewer, shared by the samples along `positions`' second-to-last dimension.
        """
        pos, inside = self.encode_position(positions)
        if self.audio_code_dim > 0 and audio_code is None:
            raise ValueError("this field is audio-conditioned: pass an audio code")
        if self.audio_code_dim == 0 and audio_code is not None:
            raise ValueError("this field is audio-independent: it must not receive audio")
        if self.condition_dim > 0 and condition is None:
            raise ValueError("this field is conditioned on reference features: pass them")
        if self.audio_attention is not None:
            audio_code = attend_audio(audio_code, pos, self.audio_attention)
        extra = [audio_code] if self.audio_code_dim > 0 else []
        extra += [condition] if self.condition_dim > 0 else []
        h = _split_mlp(self.base, pos, extra)
        density = nn.functional.softplus(h[..., :1] - 1.0) * inside
        geo = h[..., 1:]
        d = self.direction_encoding(directions)  # the torch SH encoding takes unit vectors
        rgb = torch.sigmoid(_split_mlp(self.color_head, geo, [d] + ([audio_code] if self.audio_code_dim > 0 else [])))
        return {"density": density, "rgb": rgb, "semantics": self.semantic_head(geo)}


def attend_audio(
    audio_code: Float[Tensor, "*batch code"] | Float[Tensor, "*rays code"],
    pos: Float[Tensor, "*batch enc"],
    attention: nn.Linear,
) -> Float[Tensor, "*batch code"]:
    """The audio code weighted per point and channel by `2 sigmoid(attention(pos))` (1 at initialisation).

    Concatenated to the position, the code can only shape the first layer's output uniformly in space; a product
    lets one linear layer make the mouth follow the audio and the cheeks not (the region attention of ER-NeRF).
    A per-ray code is spread over the ray's samples."""
    weights = 2.0 * torch.sigmoid(attention(pos))
    if audio_code.dim() != pos.dim():
        audio_code = audio_code.unsqueeze(-2)
    return audio_code * weights


def _split_mlp(net: nn.Sequential, first: Tensor, rest: list[Tensor]) -> Tensor:
    """`net(cat([first, *rest], -1))`, where any of `rest` may lack `first`'s second-to-last dimension
    (a per-ray input): the first layer's part for those is computed once and broadcast over it."""
    inputs = [first] + rest
    if all(t.dim() == first.dim() for t in rest):
        return net(torch.cat(inputs, -1))
    linear: nn.Linear = net[0]
    bounds = torch.tensor([0] + [t.shape[-1] for t in inputs]).cumsum(0).tolist()
    per_sample = [i for i, t in enumerate(inputs) if t.dim() == first.dim()]
    per_ray = [i for i, t in enumerate(inputs) if t.dim() != first.dim()]

    def part(indices: list[int], bias: Tensor | None) -> Tensor:
        weight = torch.cat([linear.weight[:, bounds[i] : bounds[i + 1]] for i in indices], 1)
        return nn.functional.linear(torch.cat([inputs[i] for i in indices], -1), weight, bias)

    h = part(per_sample, linear.bias) + part(per_ray, None).unsqueeze(-2)
    return net[1:](h)

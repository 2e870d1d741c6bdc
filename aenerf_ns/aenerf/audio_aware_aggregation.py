"""Audio Aware Aggregation (AAA): fuse reference features, weighting references by audio similarity.

Tokens of width `token_dim` (128 in the paper): the query is the target audio, the keys are the
references' audio and the values the features sampled from the references. Two cross-attention blocks
(pre-LayerNorm, multi-head attention, residual, feed-forward with residual) are followed by FC-ReLU-FC.

Audio tokens for target and references come from one shared projection and one shared LayerNorm, and the
query and key projections start equal and orthogonal: at initialisation the attention logit of a
reference is the scaled cosine similarity of its audio to the target's, so a reference with the target's
own audio gets the largest weight from the first step, and training refines it.

`AudioBlindAggregation` is the "w/o AAA" ablation: attention pooling whose query is the mean reference
feature, so the audio never enters.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn


class CrossAttentionBlock(nn.Module):
    """query + MHCA(LN(query), keys, values), then + FFN(LN(.)). Returns output and weights.

    Keys and values arrive layer-normalised: they are the same tokens for both blocks, so they are
    normalised once by the caller.
    """

    def __init__(self, dim: int, num_heads: int = 4) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"token_dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(inplace=True), nn.Linear(2 * dim, dim))
        nn.init.orthogonal_(self.to_q.weight)
        with torch.no_grad():
            self.to_k.weight.copy_(self.to_q.weight)

    def forward(
        self,
        query: Float[Tensor, "P C"],
        keys: Float[Tensor, "*P L C"],
        values: Float[Tensor, "P L C"],
    ) -> tuple[Float[Tensor, "P C"], Float[Tensor, "P heads L"]]:
        """`keys` are either per point (P, L, C) or shared by all points (L, C)."""
        p, num_refs, c = values.shape
        h = self.num_heads
        q = self.to_q(self.norm_q(query)).reshape(p, h, c // h)
        k = self.to_k(keys)
        if k.dim() == 2:  # shared keys: one matrix product for all points
            logits = torch.einsum("phc,lhc->phl", q, k.reshape(num_refs, h, c // h))
        else:
            logits = torch.einsum("phc,plhc->phl", q, k.reshape(p, num_refs, h, c // h))
        weights = torch.softmax(logits / math.sqrt(c // h), dim=-1)
        v = self.to_v(values).reshape(p, num_refs, h, c // h)
        attended = (weights.permute(0, 2, 1)[..., None] * v).sum(1).reshape(p, c)
        x = query + self.to_out(attended)
        x = x + self.ffn(self.norm_ffn(x))
        return x, weights


class AudioAwareAggregation(nn.Module):
    """f~ = AAA(a, a_ref, f_ref): two cross-attention blocks and an FC-ReLU-FC head."""

    def __init__(
        self, audio_dim: int, feature_dim: int, out_dim: int, token_dim: int = 128, num_heads: int = 4
    ) -> None:
        super().__init__()
        self.audio_tokens = nn.Linear(audio_dim, token_dim)
        self.audio_norm = nn.LayerNorm(token_dim)  # shared by query and keys: equal audio, equal tokens
        self.feature_tokens = nn.Linear(feature_dim, token_dim)
        self.feature_norm = nn.LayerNorm(token_dim)
        self.blocks = nn.ModuleList([CrossAttentionBlock(token_dim, num_heads) for _ in range(2)])
        self.head = nn.Sequential(nn.Linear(token_dim, token_dim), nn.ReLU(inplace=True), nn.Linear(token_dim, out_dim))
        self.blocks[0].norm_q = self.audio_norm  # the first query is an audio token too

    def forward(
        self,
        audio: Float[Tensor, "P A"],
        reference_audio: Float[Tensor, "*P L A"],
        reference_features: Float[Tensor, "P L C"],
    ) -> tuple[Float[Tensor, "P out"], Float[Tensor, "P heads L"]]:
        """Aggregated feature and the first block's attention weights over the references.

        `reference_audio` is per point (P, L, A) or, as usual, shared by all points (L, A).
        """
        query = self.audio_tokens(audio)
        keys = self.audio_norm(self.audio_tokens(reference_audio))
        values = self.feature_norm(self.feature_tokens(reference_features))
        first_weights = None
        for block in self.blocks:
            query, weights = block(query, keys, values)
            first_weights = weights if first_weights is None else first_weights
        return self.head(query), first_weights


class AudioBlindAggregation(nn.Module):
    """The "w/o AAA" ablation: attention pooling of reference features that never sees audio."""

    def __init__(self, feature_dim: int, out_dim: int, token_dim: int = 128, num_heads: int = 4) -> None:
        super().__init__()
        self.feature_tokens = nn.Linear(feature_dim, token_dim)
        self.key_norm = nn.LayerNorm(token_dim)
        self.block = CrossAttentionBlock(token_dim, num_heads)
        self.head = nn.Sequential(nn.Linear(token_dim, token_dim), nn.ReLU(inplace=True), nn.Linear(token_dim, out_dim))

    def forward(
        self,
        audio: Tensor | None,
        reference_audio: Tensor | None,
        reference_features: Float[Tensor, "P L C"],
    ) -> tuple[Float[Tensor, "P out"], Float[Tensor, "P heads L"]]:
        tokens = self.key_norm(self.feature_tokens(reference_features))
        pooled, weights = self.block(tokens.mean(1), tokens, tokens)
        return self.head(pooled), weights

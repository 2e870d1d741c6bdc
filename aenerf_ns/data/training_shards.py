"""Which training frames each process of a distributed run reads.

Under data-parallel training every process (rank) holds the whole model, including every identity's references,
background plate and audio table, but reads only its own shard of training frames from disk: whole identities
when there are at least as many identities as processes (rank r takes identities r, r + world_size, ...), and
otherwise every world_size-th frame. Frame indices stay those of the full training split, so cameras, audio rows
and per-frame metadata need no remapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from torch.utils.data import Dataset


@dataclass
class TrainingShard:
    """The training frames of one rank."""

    frame_indices: Int[Tensor, " n"]
    """Indices into the full training split, ascending."""
    identities: list[int]
    """Identities the shard covers (all of them when frames, not identities, are split)."""
    by_identity: bool
    """True when whole identities were assigned to ranks, False when frames were."""

    def describe(self, rank: int, world_size: int, names: list[str]) -> str:
        """One line for the training log."""
        what = ", ".join(names[k] for k in self.identities) if self.by_identity else "every identity"
        unit = "identities" if self.by_identity else f"1 in {world_size} frames of"
        return f"rank {rank}/{world_size}: {len(self.frame_indices)} training frames ({unit} {what})"


def training_shard(image_identity: Int[Tensor, " frames"], rank: int, world_size: int) -> TrainingShard:
    """Rank `rank`'s share of the training frames, whose identities are `image_identity`."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
    num_identities = int(image_identity.max()) + 1 if len(image_identity) else 0
    if num_identities >= world_size:
        mine = list(range(rank, num_identities, world_size))
        keep = torch.isin(image_identity, torch.tensor(mine, dtype=image_identity.dtype))
        return TrainingShard(torch.nonzero(keep).reshape(-1), mine, by_identity=True)
    frames = torch.arange(rank, len(image_identity), world_size)
    if len(frames) == 0:
        raise ValueError(f"{len(image_identity)} training frames cannot be shared among {world_size} processes")
    return TrainingShard(frames, list(range(num_identities)), by_identity=False)


class ShardView(Dataset):
    """The frames of `shard` of a training dataset: item i is the dataset's frame `frame_indices[i]`, which keeps its
    own `image_idx`, so the pixel sampler's camera indices refer to the full split."""

    def __init__(self, dataset: Dataset, shard: TrainingShard):
        self.dataset = dataset
        self.frame_indices = shard.frame_indices.tolist()

    def __len__(self) -> int:
        return len(self.frame_indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.frame_indices[index]]

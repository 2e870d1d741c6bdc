"""AE-NeRF's reference frames: per identity, a few training frames spread over the audio, loaded once.

The model is tied to the frames it trains with (they become persistent buffers), so the pick is
deterministic: farthest-point sampling in audio-feature space over the identity's training frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor

from aenerf_ns.data.talking_head_metadata import IdentityRecord, TalkingHeadMetadata


@dataclass
class ReferenceFrames:
    """The same number of reference frames for every identity."""

    images: UInt8[Tensor, "identities L H W 3"]
    """RGB frames."""
    camera_to_worlds: Float[Tensor, "identities L 3 4"]
    """Camera-to-head pose of each frame."""
    intrinsics: Float[Tensor, "identities L 4"]
    """fx, fy, cx, cy of each frame, in pixels."""
    audio_rows: Int[Tensor, "identities L"]
    """Row of the joint audio-feature table of each frame."""
    frame_indices: Int[Tensor, "identities L"]
    """Index of each frame in its identity's video."""


def select_reference_frames(features: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` rows spread over audio space (farthest-point sampling).

    Starts from the frame nearest the mean audio (a typical mouth), then repeatedly adds the frame whose
    audio is farthest from every frame chosen so far, so the references show different mouth shapes for
    the audio-aware aggregation to choose between. Deterministic.
    """
    feats = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if count < 1 or count > len(feats):
        raise ValueError(f"cannot pick {count} reference frames from {len(feats)} training frames")
    scale = feats.std(0) + 1e-6
    z = (feats - feats.mean(0)) / scale
    chosen = [int(np.argmin((z**2).sum(1)))]
    dist = ((z - z[chosen[0]]) ** 2).sum(1)
    dist[chosen[0]] = -np.inf  # never pick a row twice, even when rows repeat (e.g. identical silent frames)
    while len(chosen) < count:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((z - z[nxt]) ** 2).sum(1))
        dist[nxt] = -np.inf
    return np.array(chosen)


def _picks(identity: IdentityRecord, table: Float[Tensor, "rows flat"], count: int) -> np.ndarray:
    """Positions in the identity's training frames of its `count` references."""
    num_train = len(identity.train_frames)
    if count < 1:
        raise ValueError(f"num_references must be at least 1, got {count}")
    available = min(count, num_train)
    picks = select_reference_frames(table[identity.train_audio_rows].numpy(), available)
    if available < count:  # very short clips: repeat frames to keep the shape
        picks = np.resize(picks, count)
    return picks


def pick_reference_frames(metadata: TalkingHeadMetadata, count: int) -> ReferenceFrames:
    """`count` reference frames per identity, picked from its training frames by their audio and loaded."""
    from PIL import Image

    images, c2ws, intrinsics, audio_rows, frames = [], [], [], [], []
    for identity in metadata.identities:
        picks = _picks(identity, metadata.audio_features, count)
        images.append(np.stack([np.array(Image.open(identity.train_image_paths[i]).convert("RGB")) for i in picks]))
        index = torch.from_numpy(picks).long()
        c2ws.append(identity.train_camera_to_worlds[index])
        intrinsics.append(identity.intrinsics.expand(count, 4))
        audio_rows.append(identity.train_audio_rows[index])
        frames.append(identity.train_frames[index])
    return ReferenceFrames(
        images=torch.from_numpy(np.stack(images)),
        camera_to_worlds=torch.stack(c2ws),
        intrinsics=torch.stack(intrinsics),
        audio_rows=torch.stack(audio_rows),
        frame_indices=torch.stack(frames),
    )

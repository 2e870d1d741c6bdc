"""Where the Gaussians start: the person's pixels of a few training frames, lifted into head coordinates.

A talking-head dataset has no depth and its camera hardly moves, so there is nothing to triangulate; what it does
have is the head pose of every frame and a parsing map that says which pixels are face, hair, torso or mouth.
Every such pixel becomes a candidate point on its camera ray:

- head pixels (hair, upper and lower face) where the ray enters an ellipsoid fitted to the head's silhouette in
  the first frame (centred on the silhouette, as deep as it is wide), else where the ray crosses the plane z = 0
  through the head centre;
- mouth-interior pixels a little behind that surface, inside the mouth;
- torso pixels where the ray crosses a plane behind the head centre.

Points are then drawn from the candidates with the audio region (lower face, mouth) weighted up, since that is
where the detail that follows speech lives, and each starts with its pixel's colour and class and a size of the
mean distance to its nearest neighbours. The optimisation moves them from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from PIL import Image
from torch import Tensor

from aenerf_ns.data.dataset_format import DatasetFormatError
from aenerf_ns.data.parsing_labels import (
    AUDIO_REGION_LABELS,
    BACKGROUND,
    FACE_LOWER,
    FACE_UPPER,
    HAIR,
    LABEL_NAMES,
    MOUTH_INTERIOR,
)
from aenerf_ns.data.talking_head_dataset import load_label_map
from aenerf_ns.data.talking_head_metadata import TalkingHeadMetadata

HEAD_LABELS = (HAIR, FACE_UPPER, FACE_LOWER, MOUTH_INTERIOR)
"""Classes whose pixels lie on the head."""
MOUTH_DEPTH = 0.15
"""How far behind the face surface mouth-interior points start, as a share of the head's depth radius."""
TORSO_PLANE_Z = -0.3
"""Torso points start on the plane z = this (head units; the head centre is at 0, the face towards +z)."""
MIN_PERSON_PIXELS = 64
"""Fewer person pixels than this over the frames read means the parsing maps do not show a person."""


@dataclass
class SeedPoints:
    """Starting Gaussians in head coordinates."""

    positions: Float[Tensor, "N 3"]
    """Centres."""
    colors: Float[Tensor, "N 3"]
    """RGB in [0, 1], from the pixels they were lifted from."""
    labels: Int[Tensor, " N"]
    """Parsing class of each point's pixel (never background)."""
    spacing: Float[Tensor, " N"]
    """Mean distance to the three nearest other points (a starting size)."""


def _rays(
    camera_to_world: Float[Tensor, "3 4"], intrinsics: Float[Tensor, " 4"], xs: Tensor, ys: Tensor
) -> tuple[Tensor, Tensor]:
    """Origins and unit directions (head coordinates) of the rays through pixel centres (xs, ys)."""
    fx, fy, cx, cy = intrinsics.tolist()
    local = torch.stack([(xs + 0.5 - cx) / fx, -(ys + 0.5 - cy) / fy, -torch.ones_like(xs)], -1)
    directions = torch.nn.functional.normalize(local @ camera_to_world[:3, :3].T, dim=-1)
    return camera_to_world[:3, 3].expand_as(directions), directions


def _plane_hits(origins: Tensor, directions: Tensor, z: float) -> Tensor:
    """Where the rays cross the plane of constant z (rays parallel to it stay at their origin's distance)."""
    dz = directions[:, 2]
    t = (z - origins[:, 2]) / torch.where(dz.abs() > 1e-6, dz, torch.full_like(dz, -1e-6))
    return origins + t.clamp_min(0.0)[:, None] * directions


def _ellipsoid_hits(origins: Tensor, directions: Tensor, centre: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """First hit of each ray with an axis-aligned ellipsoid, and whether it hits at all."""
    o = (origins - centre) / radii
    d = directions / radii
    a = (d * d).sum(-1)
    b = 2 * (o * d).sum(-1)
    c = (o * o).sum(-1) - 1.0
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = (-b - torch.sqrt(disc.clamp_min(0.0))) / (2 * a)
    return origins + t[:, None] * directions, hit & (t > 0)


def _head_ellipsoid(origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Centre and radii of an ellipsoid fitted to head-pixel rays: their crossings of z = 0 span its x and y extent;
    it is as deep as it is wide."""
    crossing = _plane_hits(origins, directions, 0.0)
    low, high = torch.quantile(crossing[:, :2], torch.tensor([0.01, 0.99]), dim=0)
    half = ((high - low) / 2).clamp_min(1e-3)
    centre = torch.tensor([float(low[0] + high[0]) / 2, float(low[1] + high[1]) / 2, 0.0])
    return centre, torch.tensor([float(half[0]), float(half[1]), float(half[0])])


def _candidates(meta: TalkingHeadMetadata, frames: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lifted person pixels of `frames` evenly spaced training frames: positions, colours, labels."""
    identity = meta.identities[0]
    images = (meta.image_identity == 0).nonzero()[:, 0]
    picks = np.unique(np.linspace(0, len(images) - 1, max(frames, 1)).round().astype(int))
    positions, colors, labels = [], [], []
    ellipsoid = None
    for j in picks:
        label_map = torch.from_numpy(load_label_map(meta.parsing_filenames[int(images[j])]).astype(np.int64))
        rgb = torch.from_numpy(np.array(Image.open(identity.train_image_paths[j]).convert("RGB"))).float() / 255.0
        ys, xs = (label_map != BACKGROUND).nonzero(as_tuple=True)
        if len(xs) == 0:
            continue
        lab = label_map[ys, xs]
        origins, directions = _rays(identity.train_camera_to_worlds[j], identity.intrinsics, xs.float(), ys.float())
        on_head = torch.isin(lab, torch.tensor(HEAD_LABELS))
        if ellipsoid is None and on_head.sum() >= MIN_PERSON_PIXELS:
            ellipsoid = _head_ellipsoid(origins[on_head], directions[on_head])
        points = _plane_hits(origins, directions, TORSO_PLANE_Z)
        if ellipsoid is not None:
            surface, hit = _ellipsoid_hits(origins, directions, *ellipsoid)
            flat = _plane_hits(origins, directions, 0.0)
            head_points = torch.where(hit[:, None], surface, flat)
            inside = head_points + directions * (MOUTH_DEPTH * ellipsoid[1][2])
            head_points = torch.where((lab == MOUTH_INTERIOR)[:, None], inside, head_points)
            points = torch.where(on_head[:, None], head_points, points)
        elif on_head.any():
            points = torch.where(on_head[:, None], _plane_hits(origins, directions, 0.0), points)
        positions.append(points)
        colors.append(rgb[ys, xs])
        labels.append(lab)
    if not positions or sum(len(p) for p in positions) < MIN_PERSON_PIXELS:
        raise DatasetFormatError(
            f"the parsing maps of {identity.name}'s training frames mark (almost) no person: every pixel is "
            "background, so there is nothing to place Gaussians on; check the dataset's parsing/ folder"
        )
    return torch.cat(positions), torch.cat(colors), torch.cat(labels)


def _neighbour_spacing(points: Float[Tensor, "N 3"], k: int = 3, chunk: int = 2048) -> Float[Tensor, " N"]:
    """Mean distance of every point to its `k` nearest other points."""
    spacing = []
    for start in range(0, len(points), chunk):
        dist = torch.cdist(points[start : start + chunk], points)
        spacing.append(dist.topk(min(k + 1, len(points)), largest=False).values[:, 1:].mean(-1))
    return torch.cat(spacing)


def seed_points(
    meta: TalkingHeadMetadata,
    num_points: int,
    frames: int = 8,
    audio_region_weight: float = 3.0,
    seed: int = 0,
) -> SeedPoints:
    """`num_points` starting Gaussians for the one identity of `meta` (see the module docstring).

    Args:
        meta: the talking-head dataparser's training metadata.
        num_points: how many points to draw.
        frames: evenly spaced training frames whose pixels are lifted.
        audio_region_weight: how much likelier a lower-face or mouth pixel is drawn than another person pixel.
        seed: seed of the draw.
    """
    if len(meta.identities) != 1:
        names = ", ".join(identity.name for identity in meta.identities)
        raise DatasetFormatError(
            f"a Gaussian talking head models one person, but the data holds {len(meta.identities)} identities "
            f"({names}): train it on one dataset folder"
        )
    positions, colors, labels = _candidates(meta, frames)
    region = torch.isin(labels, torch.tensor(AUDIO_REGION_LABELS))
    if not region.any():
        names = " and ".join(LABEL_NAMES[c] for c in AUDIO_REGION_LABELS)
        raise DatasetFormatError(
            f"the parsing maps of {meta.identities[0].name}'s training frames have no {names} pixels: the "
            "audio-driven Gaussians would have nowhere to start; check the dataset's parsing/ folder"
        )
    weights = torch.where(region, audio_region_weight, 1.0)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.multinomial(weights, min(num_points, len(weights)), replacement=False, generator=generator)
    positions, colors, labels = positions[picks], colors[picks], labels[picks]
    if not torch.isfinite(positions).all() or float(positions.std(0).max()) < 1e-4:
        raise DatasetFormatError(
            f"the person's pixels of {meta.identities[0].name} lift to a degenerate point cloud (all points in one "
            "place or not finite): check the camera poses and intrinsics in transforms.json"
        )
    spacing = _neighbour_spacing(positions).clamp(1e-4, 0.1)
    return SeedPoints(positions=positions, colors=colors, labels=labels, spacing=spacing)

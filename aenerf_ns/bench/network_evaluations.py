"""How many points each network of a model runs on, and the linear layers' FLOPs, when one frame renders.

The engine's cost in units that do not depend on the machine: a renderer that places fewer samples, or runs the
reference scheme once per ray instead of once per sample, shows it here before any timing. Counting is done by
hooks on one real render, so it includes whatever the model skips (empty rays, the audio field outside the
audio region). Figures are scaled by pixel count to a 512x512 frame.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RaySamples
from torch import Tensor, nn

FRAME_PIXELS = 512 * 512
"""The frame size the figures are given for."""


def _points(value) -> int | None:
    """Points in a network input: the leading dimensions of a (..., C) tensor, or a RaySamples' shape."""
    if isinstance(value, Tensor) and value.dim() >= 2:
        return value.shape[:-1].numel()
    if isinstance(value, RaySamples):
        return value.shape.numel()
    return None


@contextmanager
def _counting(model: nn.Module, points: dict[str, int], flops: dict[str, int]):
    """Hooks that add each top-level network's input points and each linear layer's multiply-adds x 2."""
    handles = []
    patched: list[nn.Module] = []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue  # renderers, samplers, colliders: no network

        def count_points(module, args, name=name):
            n = _points(args[0]) if args else None
            if n is not None:
                points[name] += n

        handles.append(child.register_forward_pre_hook(count_points))
        for sub in child.modules():
            if isinstance(sub, nn.Linear):

                def count_flops(module, args, out, name=name):
                    flops[name] += 2 * args[0].shape[:-1].numel() * module.in_features * module.out_features

                handles.append(sub.register_forward_hook(count_flops))
            density_fn = getattr(sub, "density_fn", None)
            if callable(density_fn) and "density_fn" not in vars(sub):

                def counted(positions, *args, _fn=density_fn, name=name, **kwargs):
                    points[name] += positions.shape[:-1].numel()
                    return _fn(positions, *args, **kwargs)

                sub.density_fn = counted  # instance attribute: samplers that look it up call this one
                patched.append(sub)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for sub in patched:
            del sub.density_fn


@torch.no_grad()
def network_evaluations(model: nn.Module, camera: Cameras) -> dict:
    """Points per top-level network and linear-layer GFLOP of rendering `camera` (one camera), per 512x512 frame.

    Returns {"measured_pixels", "points": {network: points per frame}, "points_per_pixel": {...},
    "linear_gflop": {network: GFLOP per frame}, "total_points", "total_linear_gflop"}. Points count each call:
    a network run by a coarse and a fine pass counts both. Convolutions, grid reads and attention products are
    not in the FLOPs (the linear layers dominate an MLP field)."""
    points: dict[str, int] = defaultdict(int)
    flops: dict[str, int] = defaultdict(int)
    model.eval()
    pixels = int(camera.height.reshape(-1)[0]) * int(camera.width.reshape(-1)[0])
    with _counting(model, points, flops):
        model.get_outputs_for_camera(camera)
    scale = FRAME_PIXELS / pixels
    names = sorted(set(points) | set(flops))
    return {
        "measured_pixels": pixels,
        "points": {n: points[n] * scale for n in names if points[n]},
        "points_per_pixel": {n: points[n] / pixels for n in names if points[n]},
        "linear_gflop": {n: flops[n] * scale / 1e9 for n in names if flops[n]},
        "total_points": sum(points.values()) * scale,
        "total_linear_gflop": sum(flops.values()) * scale / 1e9,
    }

"""Splatting 3D Gaussians into one camera: projection and front-to-back alpha compositing.

The functional core of the Gaussian talking head. `splat` renders with gsplat's CUDA rasterizer on a GPU and
with the pure-torch path here everywhere else; both take and return the same tensors.

The pure-torch path follows gsplat 1.4's kernels rule for rule, so that the two render the same image
(`tests/test_splatting.py` checks values and gradients against gsplat's own reference functions):

- projection (`project_gaussians`): EWA splatting of the camera-space covariance through the perspective
  Jacobian, whose x/z and y/z are clamped 30 % of the half field of view beyond the image; a 0.3 px low-pass
  added to the 2D covariance; a 3-sigma screen radius; Gaussians behind the near plane or off the image get
  radius 0 and are not drawn;
- compositing (`rasterize_pixels`): a Gaussian is tested at the pixels of every 16 px tile its radius
  touches; it counts where its alpha (opacity times the 2D Gaussian at the pixel centre, clamped to 0.999)
  is at least 1/255, front to back by camera depth; a pixel stops before the Gaussian that would take its
  transmittance to 1e-4 or below.

Instead of looping over tiles, the torch path enumerates (pixel, Gaussian) pairs: it finds the pairs that count
without gradients, sorts them by pixel then depth, and only then evaluates them with autograd, with the
transmittance as a segmented cumulative sum of log(1 - alpha) per pixel (in float64, so long pixel runs keep
their precision). Memory grows with the number of pairs, so this path suits small images (the CPU presets);
GPUs use gsplat.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

TILE_SIZE = 16
"""Side of the square pixel tiles a Gaussian is tested on (gsplat's default)."""
EPS2D = 0.3
"""Low-pass filter added to every 2D covariance, in squared pixels (anti-aliasing, as in 3DGS)."""
ALPHA_MIN = 1.0 / 255.0
"""A Gaussian counts at a pixel only where its alpha is at least this."""
ALPHA_MAX = 0.999
"""Alphas are clamped to this, so no single Gaussian makes a pixel fully opaque."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops before the Gaussian that would take its transmittance to this or below."""
MAX_PAIRS_PER_CHUNK = 1 << 23
"""Candidate (pixel, Gaussian) pairs tested at once by the torch path, bounding its temporary memory."""

Backend = Literal["auto", "torch", "gsplat"]


@dataclass
class ProjectedGaussians:
    """3D Gaussians as one camera sees them."""

    means2d: Float[Tensor, "N 2"]
    """Centre in pixels (x right, y down; pixel centres at half-integers)."""
    conics: Float[Tensor, "N 3"]
    """Inverse 2D covariance (a, b, c) of a*dx^2 + 2*b*dx*dy + c*dy^2."""
    depths: Float[Tensor, " N"]
    """Camera-space z (distance along the optical axis)."""
    radii: Int[Tensor, " N"]
    """Screen radius in pixels (3 sigma); 0 for Gaussians that are not drawn."""


@dataclass
class SplatResult:
    """One rendered camera."""

    render: Float[Tensor, "H W D"]
    """Alpha-composited features (not over any background)."""
    alpha: Float[Tensor, "H W 1"]
    """Accumulated opacity (1 - final transmittance)."""
    means2d: Float[Tensor, "1 N 2"]
    """Projected centres; their gradient drives densification (gsplat's `means2d`)."""
    radii: Int[Tensor, "1 N"]
    """Screen radii, 0 where a Gaussian was not drawn (gsplat's `radii`)."""


def world_to_camera(camera_to_world: Float[Tensor, "3 4"]) -> Float[Tensor, "4 4"]:
    """nerfstudio's camera-to-world pose (OpenGL axes: y up, looking along -z) as the world-to-camera matrix in
    OpenCV axes (y down, looking along +z) that projection expects."""
    rotation = camera_to_world[:3, :3] * camera_to_world.new_tensor([1.0, -1.0, -1.0])
    translation = camera_to_world[:3, 3:4]
    viewmat = torch.eye(4, dtype=camera_to_world.dtype, device=camera_to_world.device)
    viewmat[:3, :3] = rotation.T
    viewmat[:3, 3:4] = -rotation.T @ translation
    return viewmat


def quaternion_to_rotation(quats: Float[Tensor, "N 4"]) -> Float[Tensor, "N 3 3"]:
    """Rotation matrices of (w, x, y, z) quaternions, normalised first."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, -1).reshape(*quats.shape[:-1], 3, 3)


def covariances(quats: Float[Tensor, "N 4"], scales: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3 3"]:
    """World-space covariance R S S^T R^T of each Gaussian (`scales` are standard deviations, not logs)."""
    m = quaternion_to_rotation(quats) * scales[:, None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Float[Tensor, "N 3"],
    covars: Float[Tensor, "N 3 3"],
    viewmat: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> ProjectedGaussians:
    """Project world-space Gaussians into a pinhole camera (see the module docstring for the rules)."""
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ rotation.T + translation
    covars_c = rotation @ covars @ rotation.T
    x, y, z = means_c.unbind(-1)
    in_depth = (z > near_plane) & (z < far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled Gaussians' gradients finite
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    slack_x, slack_y = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy
    tx = z * torch.clamp(x / z, min=-(cx / fx + slack_x), max=(width - cx) / fx + slack_x)
    ty = z * torch.clamp(y / z, min=-(cy / fy + slack_y), max=(height - cy) / fy + slack_y)
    zeros = torch.zeros_like(z)
    jacobian = torch.stack([fx / z, zeros, -fx * tx / z**2, zeros, fy / z, -fy * ty / z**2], -1).reshape(-1, 2, 3)
    cov2d = jacobian @ covars_c @ jacobian.transpose(-1, -2)
    a = cov2d[:, 0, 0] + eps2d
    c = cov2d[:, 1, 1] + eps2d
    b = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    det = (a * c - cov2d[:, 0, 1] * cov2d[:, 1, 0]).clamp_min(1e-10)
    conics = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    with torch.no_grad():
        half_trace = 0.5 * (a + c)
        radius = torch.ceil(3.0 * torch.sqrt(half_trace + torch.sqrt((half_trace**2 - det).clamp_min(0.01))))
        on_image = (
            (means2d[:, 0] + radius > 0)
            & (means2d[:, 0] - radius < width)
            & (means2d[:, 1] + radius > 0)
            & (means2d[:, 1] - radius < height)
        )
        radii = torch.where(in_depth & on_image, radius, torch.zeros_like(radius)).int()
    return ProjectedGaussians(means2d=means2d, conics=conics, depths=means_c[:, 2], radii=radii)


def _packed(projected: ProjectedGaussians, opacities: Float[Tensor, " N"]) -> Float[Tensor, "N 6"]:
    """Per Gaussian (x, y, conic a, b, c, opacity): what compositing reads, gathered once per pair."""
    return torch.cat([projected.means2d, projected.conics, opacities[:, None]], -1)


def _gaussian_alpha(
    splats: Float[Tensor, "P 6"], xs: Int[Tensor, " P"], ys: Int[Tensor, " P"]
) -> tuple[Float[Tensor, " P"], Float[Tensor, " P"]]:
    """(alpha, sigma) of each pair's Gaussian (`_packed` rows) at the centre of its pixel (xs, ys); alpha clamped
    to `ALPHA_MAX`."""
    dx = splats[:, 0] - xs.to(splats.dtype) - 0.5
    dy = splats[:, 1] - ys.to(splats.dtype) - 0.5
    sigma = 0.5 * (splats[:, 2] * dx * dx + splats[:, 4] * dy * dy) + splats[:, 3] * dx * dy
    return torch.clamp_max(splats[:, 5] * torch.exp(-sigma), ALPHA_MAX), sigma


def _candidate_rectangles(
    projected: ProjectedGaussians, opacities: Float[Tensor, " N"], width: int, height: int, tile_size: int
) -> tuple[Int[Tensor, "N 2"], Int[Tensor, "N 2"]]:
    """Pixel rectangle [start, stop) in x and y where each Gaussian may count: inside the tiles its radius touches
    (gsplat's rule) and inside the box around the ellipse where its alpha reaches `ALPHA_MIN` (outside that box
    alpha < 1/255, so leaving those pixels out changes nothing and saves most of the tests)."""
    means2d, radii, conics = projected.means2d, projected.radii, projected.conics
    device = means2d.device
    tiles = torch.tensor([math.ceil(width / tile_size), math.ceil(height / tile_size)], device=device)
    scaled_mean, scaled_radius = means2d / tile_size, (radii / tile_size)[:, None]
    tile_first = torch.minimum(torch.floor(scaled_mean - scaled_radius).long().clamp_min(0), tiles)
    tile_last = torch.minimum(torch.ceil(scaled_mean + scaled_radius).long().clamp_min(0), tiles)
    size = torch.tensor([width, height], device=device)
    # alpha >= ALPHA_MIN  <=>  sigma <= log(opacity / ALPHA_MIN); the ellipse's half-extents follow from the
    # 2D covariance (the inverse conic), with a small margin for rounding
    reach = 2.0 * torch.log((opacities / ALPHA_MIN).clamp_min(1.0))
    det = (conics[:, 0] * conics[:, 2] - conics[:, 1] ** 2).clamp_min(1e-20)
    half = torch.sqrt(reach[:, None] * torch.stack([conics[:, 2], conics[:, 0]], -1) / det[:, None]) * 1.001 + 1e-3
    start = torch.maximum(tile_first * tile_size, torch.ceil(means2d - half - 0.5).long())
    stop = torch.minimum(torch.minimum(tile_last * tile_size, size), torch.floor(means2d + half - 0.5).long() + 1)
    stop = torch.where(((radii > 0) & (reach > 0))[:, None], stop, start)
    return start, torch.maximum(stop, start)


def _expand_rectangles(
    start: Int[Tensor, "N 2"], stop: Int[Tensor, "N 2"], ids: Int[Tensor, " k"]
) -> tuple[Int[Tensor, " P"], Int[Tensor, " P"], Int[Tensor, " P"]]:
    """Every pixel (Gaussian, x, y) of the rectangles of Gaussians `ids`, row by row."""
    extent = stop[ids] - start[ids]
    row_owner = torch.repeat_interleave(ids, extent[:, 1])
    row_first = torch.cumsum(extent[:, 1], 0) - extent[:, 1]
    row_local = torch.arange(len(row_owner), device=ids.device) - torch.repeat_interleave(row_first, extent[:, 1])
    row_y = start[row_owner, 1] + row_local
    row_width = stop[row_owner, 0] - start[row_owner, 0]
    row_of_pixel = torch.repeat_interleave(torch.arange(len(row_owner), device=ids.device), row_width)
    pixel_first = torch.cumsum(row_width, 0) - row_width
    xs = (
        start[row_owner[row_of_pixel], 0]
        + torch.arange(len(row_of_pixel), device=ids.device)
        - pixel_first[row_of_pixel]
    )
    return row_owner[row_of_pixel], xs, row_y[row_of_pixel]


def _counting_pairs(
    projected: ProjectedGaussians,
    splats: Float[Tensor, "N 6"],
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Int[Tensor, " P"], Int[Tensor, " P"], Int[Tensor, " P"], Float[Tensor, " P"]]:
    """(Gaussian, x, y, alpha) of the pairs with alpha >= `ALPHA_MIN` (and sigma >= 0), unordered, without
    gradients."""
    start, stop = _candidate_rectangles(projected, splats[:, 5], width, height, tile_size)
    extent = stop - start
    counts = extent[:, 0] * extent[:, 1]
    ends = torch.cumsum(counts, 0)
    found: list[tuple[Tensor, ...]] = []
    first = 0
    while first < len(counts):  # chunks of Gaussians with at most MAX_PAIRS_PER_CHUNK candidates (at least one)
        base = int(ends[first - 1]) if first else 0
        last = min(max(int(torch.searchsorted(ends, base + MAX_PAIRS_PER_CHUNK, right=True)), first + 1), len(counts))
        gaussians, xs, ys = _expand_rectangles(start, stop, torch.arange(first, last, device=counts.device))
        alpha, sigma = _gaussian_alpha(splats[gaussians], xs, ys)
        counted = (alpha >= ALPHA_MIN) & (sigma >= 0)
        found.append((gaussians[counted], xs[counted], ys[counted], alpha[counted]))
        first = last
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=splats.device)
        return empty, empty, empty, splats.new_zeros(0)
    return tuple(torch.cat(parts) for parts in zip(*found))  # type: ignore[return-value]


def _segment_exclusive_sum(values: Float[Tensor, " P"], starts: Int[Tensor, " P"]) -> Float[Tensor, " P"]:
    """Per-segment exclusive prefix sum of `values`; `starts[i]` is the index where element i's segment begins."""
    inclusive = torch.cumsum(values, 0)
    exclusive = inclusive - values
    return exclusive - exclusive[starts]


def rasterize_pixels(
    projected: ProjectedGaussians,
    colors: Float[Tensor, "N D"],
    opacities: Float[Tensor, " N"],
    width: int,
    height: int,
    tile_size: int = TILE_SIZE,
) -> tuple[Float[Tensor, "H W D"], Float[Tensor, "H W 1"]]:
    """Front-to-back compositing of projected Gaussians' `colors` (any number of channels), in pure torch."""
    n = opacities.shape[0]
    splats = _packed(projected, opacities)
    with torch.no_grad():
        gaussians, xs, ys, alpha = _counting_pairs(projected, splats.detach(), width, height, tile_size)
        depth_rank = torch.empty(n, dtype=torch.long, device=opacities.device)
        by_depth = torch.sort(projected.depths.detach(), stable=True).indices
        depth_rank[by_depth] = torch.arange(n, device=opacities.device)
        pixels = ys * width + xs
        order = torch.sort(pixels * n + depth_rank[gaussians]).indices
        gaussians, xs, ys, pixels, alpha = gaussians[order], xs[order], ys[order], pixels[order], alpha[order]
        log_t = torch.log1p(-alpha.double())
        keep = _segment_exclusive_sum(log_t, _segment_starts(pixels)) + log_t > math.log(TRANSMITTANCE_MIN)
        gaussians, xs, ys, pixels = gaussians[keep], xs[keep], ys[keep], pixels[keep]
        starts = _segment_starts(pixels)
    alpha, _ = _gaussian_alpha(splats[gaussians], xs, ys)
    transmittance = torch.exp(_segment_exclusive_sum(torch.log1p(-alpha.double()), starts)).to(alpha.dtype)
    weights = alpha * transmittance
    contributions = weights[:, None] * colors[gaussians]
    render = colors.new_zeros(height * width, colors.shape[-1]).index_add(0, pixels, contributions)
    accumulated = weights.new_zeros(height * width).index_add(0, pixels, weights)
    return render.reshape(height, width, -1), accumulated.reshape(height, width, 1)


def _segment_starts(sorted_keys: Int[Tensor, " P"]) -> Int[Tensor, " P"]:
    """For each element of a sorted key array, the index of the first element with the same key."""
    if len(sorted_keys) == 0:
        return sorted_keys
    new = torch.ones_like(sorted_keys, dtype=torch.bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    index = torch.arange(len(sorted_keys), device=sorted_keys.device)
    return torch.cummax(torch.where(new, index, torch.zeros_like(index)), 0).values


GSPLAT_HELP = (
    "install the CUDA toolkit (nvcc, matching torch's CUDA version) and ninja so gsplat can build its kernels on first "
    "use, or a prebuilt gsplat wheel (pip install gsplat --index-url https://docs.gsplat.studio/whl/pt<torch>cu<cuda>, "
    "e.g. pt24cu124); see docs/gaussians.md"
)
"""What to do when gsplat's CUDA kernels are missing."""


@functools.cache
def gsplat_unavailable_reason() -> str | None:
    """None when gsplat's CUDA kernels load (a prebuilt wheel, or compiled on this first call: minutes, once per
    machine, behind gsplat's own "Setting up CUDA" spinner); otherwise why they do not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:  # a failed JIT build raises from the import
        return f"gsplat's CUDA kernels failed to load: {exc}"
    if _C is None:
        return "gsplat found no CUDA toolkit (nvcc) to build its kernels"
    return None


def _use_gsplat(backend: Backend, device: torch.device) -> bool:
    """Whether to rasterize with gsplat: "auto" on a CUDA device whose kernels load (warning once when they do not),
    "gsplat" always (an error when its kernels do not load), "torch" never."""
    if backend == "torch":
        return False
    if backend not in ("auto", "gsplat"):
        raise ValueError(f"unknown splatting backend {backend!r}: use 'auto', 'torch' or 'gsplat'")
    if backend == "auto" and device.type != "cuda":
        return False
    reason = gsplat_unavailable_reason()
    if reason is None:
        return True
    if backend == "gsplat":
        raise RuntimeError(f"the gsplat rasterizer was asked for but cannot run: {reason}; {GSPLAT_HELP}")
    _warn_once(f"{reason}: rendering with the pure-torch rasterizer, which is far slower on a GPU; {GSPLAT_HELP}")
    return False


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def splat(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    opacities: Float[Tensor, " N"],
    colors: Float[Tensor, "N D"],
    viewmat: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
    width: int,
    height: int,
    backend: Backend = "auto",
) -> SplatResult:
    """Render Gaussians (`scales` as standard deviations, `opacities` in [0, 1], quaternions w-first, any norm)
    with `colors` of any width into one camera: gsplat's CUDA rasterizer on a GPU ("auto", when its kernels load)
    or the torch path."""
    if _use_gsplat(backend, means.device):
        from gsplat import rasterization

        render, alpha, meta = rasterization(
            means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
            eps2d=EPS2D, tile_size=TILE_SIZE, packed=False, render_mode="RGB", rasterize_mode="classic",
        )  # fmt: skip
        return SplatResult(render[0], alpha[0], meta["means2d"], meta["radii"])
    projected = project_gaussians(means, covariances(quats, scales), viewmat, K, width, height)
    means2d = projected.means2d[None]  # the tensor whose gradient densification reads: it must feed the render
    projected.means2d = means2d[0]
    render, alpha = rasterize_pixels(projected, colors, opacities, width, height)
    return SplatResult(render, alpha, means2d, projected.radii[None])

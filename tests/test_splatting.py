"""The pure-torch splatting path against gsplat's own reference functions: values and gradients.

gsplat ships pure-torch references for projection (`_fully_fused_projection`), covariances
(`_quat_scale_to_covar_preci`), tile intersection (`_isect_tiles`, `_isect_offset_encode`) and compositing
(`accumulate`). Which Gaussians a pixel composites is decided by its CUDA kernel, so the test walks each pixel's
tile list exactly as that kernel does (alpha threshold, early stop) to build the pairs `accumulate` takes, and
gives `accumulate` a plain per-pixel transmittance product in place of nerfacc's CUDA-only helpers.
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from aenerf_ns.gaussians.splatting import (
    ALPHA_MAX,
    ALPHA_MIN,
    TILE_SIZE,
    TRANSMITTANCE_MIN,
    covariances,
    project_gaussians,
    splat,
    world_to_camera,
)

WIDTH, HEIGHT = 40, 24


def random_scene(n: int, dtype=torch.float64, seed: int = 0):
    """Gaussians in front of a camera 6 units away, a few of them large and nearly opaque so that pixels stop
    early, one behind the camera and one far off the image."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([1.6, 1.0, 1.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.12 + 0.01
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    colors = torch.rand(n, 5, generator=g, dtype=dtype)
    scales[:4] = 0.3
    opacities[:4] = 0.995
    means[:4] = means[:4] * 0.1  # stacked near the centre: opaque enough to stop pixels early
    means[-1] = torch.tensor([0.0, 0.0, 9.0], dtype=dtype)  # behind the camera
    means[-2] = torch.tensor([40.0, 0.0, 0.0], dtype=dtype)  # off the image
    pose = torch.tensor([[1.0, 0.0, 0.0, 0.1], [0.0, 1.0, 0.0, -0.05], [0.0, 0.0, 1.0, 6.0]], dtype=dtype)
    K = torch.tensor([[60.0, 0.0, WIDTH / 2 + 0.3], [0.0, 60.0, HEIGHT / 2 - 0.2], [0.0, 0.0, 1.0]], dtype=dtype)
    return means, quats, scales, opacities, colors, world_to_camera(pose), K


@pytest.fixture
def reference():
    """gsplat's pure-torch reference functions (a private module): only the tests that compare with it skip
    without it."""
    return pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat's private _torch_impl cannot be imported")


def _require_grad(*tensors):
    return [t.clone().requires_grad_(True) for t in tensors]


def _pairs_as_the_kernel_walks_them(reference, means2d, conics, opacities, radii, depths):
    """(Gaussian, pixel) pairs in compositing order, by the rules of gsplat's rasterize_to_pixels kernel."""
    tiles_x, tiles_y = math.ceil(WIDTH / TILE_SIZE), math.ceil(HEIGHT / TILE_SIZE)
    _, isect_ids, flatten_ids = reference._isect_tiles(means2d, radii, depths, TILE_SIZE, tiles_x, tiles_y)
    offsets = reference._isect_offset_encode(isect_ids, 1, tiles_x, tiles_y).flatten().tolist() + [len(flatten_ids)]
    m, c, o = means2d[0].tolist(), conics[0].tolist(), opacities.tolist()
    gaussians, pixels, stopped = [], [], 0
    for tile in range(tiles_x * tiles_y):
        ids = flatten_ids[offsets[tile] : offsets[tile + 1]].tolist()
        ty, tx = divmod(tile, tiles_x)
        for y in range(ty * TILE_SIZE, min((ty + 1) * TILE_SIZE, HEIGHT)):
            for x in range(tx * TILE_SIZE, min((tx + 1) * TILE_SIZE, WIDTH)):
                t = 1.0
                for g in ids:
                    dx, dy = m[g][0] - (x + 0.5), m[g][1] - (y + 0.5)
                    sigma = 0.5 * (c[g][0] * dx * dx + c[g][2] * dy * dy) + c[g][1] * dx * dy
                    alpha = min(ALPHA_MAX, o[g] * math.exp(-sigma))
                    if sigma < 0 or alpha < ALPHA_MIN:
                        continue
                    if t * (1.0 - alpha) <= TRANSMITTANCE_MIN:
                        stopped += 1
                        break
                    gaussians.append(g)
                    pixels.append(y * WIDTH + x)
                    t *= 1.0 - alpha
    return torch.tensor(gaussians), torch.tensor(pixels), stopped


def _per_pixel_nerfacc():
    """Stand-ins for nerfacc's CUDA-only `render_weight_from_alpha` and `accumulate_along_rays`, one pixel at a time."""

    def render_weight_from_alpha(alphas, ray_indices, n_rays):
        trans = torch.ones_like(alphas)
        for ray in ray_indices.unique():
            at = (ray_indices == ray).nonzero()[:, 0]
            kept = torch.cumprod(1.0 - alphas[at], 0)
            trans = trans.index_put((at,), torch.cat([kept.new_ones(1), kept[:-1]]))
        return alphas * trans, trans

    def accumulate_along_rays(weights, values, ray_indices, n_rays):
        contributions = weights[:, None] if values is None else weights[:, None] * values
        return contributions.new_zeros(n_rays, contributions.shape[-1]).index_add(0, ray_indices, contributions)

    return types.SimpleNamespace(
        render_weight_from_alpha=render_weight_from_alpha, accumulate_along_rays=accumulate_along_rays
    )


def _reference_render(reference, means, quats, scales, opacities, colors, viewmat, K, monkeypatch):
    covars, _ = reference._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = reference._fully_fused_projection(
        means, covars, viewmat[None], K[None], WIDTH, HEIGHT
    )
    with torch.no_grad():
        gaussians, pixels, stopped = _pairs_as_the_kernel_walks_them(
            reference, means2d, conics, opacities, radii, depths
        )
    monkeypatch.setitem(sys.modules, "nerfacc", _per_pixel_nerfacc())
    render, alpha = reference.accumulate(
        means2d, conics, opacities[None], colors[None], gaussians, pixels, torch.zeros_like(pixels), WIDTH, HEIGHT
    )
    return render[0], alpha[0], radii[0], stopped


def test_projection_matches_gsplat_reference(reference):
    means, quats, scales, _, _, viewmat, K = random_scene(64)
    ours_in = _require_grad(means, quats, scales)
    ref_in = _require_grad(means, quats, scales)
    ours = project_gaussians(ours_in[0], covariances(ours_in[1], ours_in[2]), viewmat, K, WIDTH, HEIGHT)
    covars, _ = reference._quat_scale_to_covar_preci(ref_in[1], ref_in[2], compute_preci=False)
    radii, means2d, depths, conics, _ = reference._fully_fused_projection(
        ref_in[0], covars, viewmat[None], K[None], WIDTH, HEIGHT
    )

    assert torch.equal(ours.radii, radii[0])
    assert (ours.radii == 0).sum() >= 2  # the Gaussian behind the camera and the one off the image
    drawn = ours.radii > 0
    for mine, theirs in ((ours.means2d, means2d[0]), (ours.conics, conics[0]), (ours.depths, depths[0])):
        torch.testing.assert_close(mine[drawn], theirs[drawn], rtol=1e-10, atol=1e-10)

    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype) * drawn.reshape(-1, *[1] * (t.dim() - 1)) for t in
               (ours.means2d, ours.conics, ours.depths)]  # fmt: skip
    sum(((t * w).sum() for t, w in zip((ours.means2d, ours.conics, ours.depths), weights))).backward()
    sum(((t * w).sum() for t, w in zip((means2d[0], conics[0], depths[0]), weights))).backward()
    for mine, theirs in zip(ours_in, ref_in):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rasterization_matches_gsplat_reference_values_and_gradients(dtype, monkeypatch, reference):
    scene = random_scene(60, dtype=dtype, seed=3)
    viewmat, K = scene[5], scene[6]
    ours_in = _require_grad(*scene[:5])
    ref_in = _require_grad(*scene[:5])

    ours = splat(*ours_in, viewmat, K, WIDTH, HEIGHT, backend="torch")
    ref_render, ref_alpha, ref_radii, stopped = _reference_render(reference, *ref_in, viewmat, K, monkeypatch)
    assert stopped > 0, "the scene must exercise the early stop of opaque pixels"
    assert (ref_alpha > 0.5).any() and (ref_alpha == 0).any()

    tol = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert torch.equal(ours.radii[0], ref_radii)
    torch.testing.assert_close(ours.render, ref_render, **tol)
    torch.testing.assert_close(ours.alpha, ref_alpha, **tol)

    g = torch.Generator().manual_seed(2)
    w_render = torch.randn(ours.render.shape, generator=g, dtype=dtype)
    w_alpha = torch.randn(ours.alpha.shape, generator=g, dtype=dtype)
    ((ours.render * w_render).sum() + (ours.alpha * w_alpha).sum()).backward()
    ((ref_render * w_render).sum() + (ref_alpha * w_alpha).sum()).backward()
    grad_tol = dict(rtol=1e-7, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-3, atol=2e-4)
    for name, mine, theirs in zip(("means", "quats", "scales", "opacities", "colors"), ours_in, ref_in):
        assert theirs.grad.abs().sum() > 0, name
        torch.testing.assert_close(mine.grad, theirs.grad, **grad_tol, msg=lambda m, n=name: f"{n}: {m}")


def test_pixels_composite_front_to_back():
    """Two overlapping Gaussians: the nearer one's colour dominates wherever it is opaque, whatever the order."""
    dtype = torch.float32
    means = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, -0.5]], dtype=dtype)  # the first is nearer the camera
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=dtype)
    scales = torch.full((2, 3), 0.4, dtype=dtype)
    opacities = torch.tensor([0.99, 0.99], dtype=dtype)
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    pose = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 6.0]], dtype=dtype)
    K = torch.tensor([[60.0, 0, 20.0], [0, 60.0, 12.0], [0, 0, 1.0]], dtype=dtype)
    for order in ([0, 1], [1, 0]):
        out = splat(means[order], quats, scales, opacities, colors[order], world_to_camera(pose), K, WIDTH, HEIGHT)
        centre = out.render[12, 20]
        assert centre[0] > 0.95 and centre[2] < 0.05, order


def test_empty_scene_renders_nothing():
    means, quats, scales, opacities, colors, viewmat, K = random_scene(4)
    means = means + torch.tensor([0.0, 0.0, 20.0], dtype=means.dtype)  # all behind the camera
    out = splat(means, quats, scales, opacities, colors, viewmat, K, WIDTH, HEIGHT, backend="torch")
    assert out.render.abs().sum() == 0 and out.alpha.abs().sum() == 0
    assert (out.radii == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's CUDA rasterizer needs a GPU")
def test_torch_path_matches_gsplat_cuda():
    scene = [t.float().cuda() for t in random_scene(200, seed=5)]
    viewmat, K = scene[5], scene[6]
    ours_in, cuda_in = _require_grad(*scene[:5]), _require_grad(*scene[:5])
    ours = splat(*ours_in, viewmat, K, WIDTH, HEIGHT, backend="torch")
    theirs = splat(*cuda_in, viewmat, K, WIDTH, HEIGHT, backend="gsplat")
    torch.testing.assert_close(ours.render, theirs.render, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(ours.alpha, theirs.alpha, rtol=1e-3, atol=1e-4)
    weights = torch.randn_like(ours.render)
    (ours.render * weights).sum().backward()
    (theirs.render * weights).sum().backward()
    for mine, other in zip(ours_in, cuda_in):
        torch.testing.assert_close(mine.grad, other.grad, rtol=1e-2, atol=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without CUDA")
def test_asking_for_gsplat_without_cuda_is_a_clear_error():
    scene = random_scene(8, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="gsplat rasterizer was asked for but cannot run: no CUDA device"):
        splat(*scene[:5], scene[5], scene[6], WIDTH, HEIGHT, backend="gsplat")
    with pytest.raises(ValueError, match="unknown splatting backend"):
        splat(*scene[:5], scene[5], scene[6], WIDTH, HEIGHT, backend="cuda")

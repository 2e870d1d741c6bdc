"""RegionPixelSampler: the fractions of rays it actually draws, and what it collates."""

from __future__ import annotations

import pytest
import torch

from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY, OVERLAP
from aenerf_ns.aenerf.region_sampler import RegionPixelSampler, RegionPixelSamplerConfig

N, H, W = 3, 40, 40
Y0, Y1, X0, X1 = 26, 34, 14, 24  # audio region: 8 x 10 = 80 of 1600 pixels per image (5 %)
AREA_FRACTION = (Y1 - Y0) * (X1 - X0) / (H * W)
IMAGE_IDX = torch.tensor([7, 2, 11])  # absolute dataset indices of the three images in the batch


def make_batch() -> dict:
    """An image batch shaped like nerfstudio's: every pixel's colour encodes (image, y, x)."""
    n, y, x = torch.meshgrid(torch.arange(N), torch.arange(H), torch.arange(W), indexing="ij")
    image = torch.stack([n / 10.0, y / 100.0, x / 100.0], -1).float()
    region = torch.zeros(N, H, W, 1, dtype=torch.bool)
    region[:, Y0:Y1, X0:X1] = True
    parsing = ((y * W + x) % 251).to(torch.uint8)[..., None]
    return {"image": image, "image_idx": IMAGE_IDX.clone(), "audio_region": region, "parsing": parsing}


def local_image(absolute: torch.Tensor) -> torch.Tensor:
    """Position in the batch of each absolute image index."""
    return (absolute[:, None] == IMAGE_IDX[None]).float().argmax(1)


def in_region(indices: torch.Tensor) -> torch.Tensor:
    y, x = indices[:, 1], indices[:, 2]
    return (y >= Y0) & (y < Y1) & (x >= X0) & (x < X1)


def draw(config: RegionPixelSamplerConfig, batches: int, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    sampler = config.setup()
    assert isinstance(sampler, RegionPixelSampler)
    batch = make_batch()
    return [sampler.sample(batch) for _ in range(batches)]


def test_region_and_overlap_fractions_match_the_config():
    out = draw(RegionPixelSamplerConfig(num_rays_per_batch=2000, overlap_fraction=0.4, audio_region_fraction=0.25), 10)
    for pixels in out:
        assert pixels["indices"].shape == (2000, 3)
        assert pixels["ray_group"].shape == (2000,)
        inside = in_region(pixels["indices"])
        groups = pixels["ray_group"]
        assert inside.float().mean().item() == pytest.approx(0.25, abs=0.005)
        for member in (inside, ~inside):
            assert (groups[member] == OVERLAP).float().mean().item() == pytest.approx(0.4, abs=0.005)
        # the groups agree with the pixels: audio-only rays lie in the region, other-only rays outside it
        assert inside[groups == AUDIO_ONLY].all()
        assert not inside[groups == OTHER_ONLY].any()
        assert set(groups.unique().tolist()) == {AUDIO_ONLY, OTHER_ONLY, OVERLAP}


def test_region_rays_cover_the_region_and_other_rays_cover_the_rest_uniformly():
    out = draw(RegionPixelSamplerConfig(num_rays_per_batch=2000, audio_region_fraction=0.25), 10)
    idx = torch.cat([p["indices"] for p in out])
    inside = in_region(idx)
    local = local_image(idx[:, 0])
    # every region pixel of every image is drawn, and none far more often than the others
    flat = (local * H + idx[:, 1]) * W + idx[:, 2]
    counts = torch.bincount(flat[inside], minlength=N * H * W).reshape(N, H, W)[:, Y0:Y1, X0:X1].float()
    expected = inside.sum().item() / counts.numel()  # about 21 draws per region pixel
    assert counts.min().item() >= 3 and counts.max().item() <= 3 * expected
    # the outside draws spread over all three images and over the whole image outside the region
    for image in range(N):
        assert (local[~inside] == image).float().mean().item() == pytest.approx(1 / 3, abs=0.03)
    assert idx[~inside][:, 1].float().mean().item() == pytest.approx((H - 1) / 2, abs=1.5)
    assert idx[~inside][:, 1].min().item() == 0 and idx[~inside][:, 1].max().item() == H - 1


def test_collated_values_are_read_at_the_returned_pixels():
    (pixels,) = draw(RegionPixelSamplerConfig(num_rays_per_batch=500), 1)
    batch = make_batch()
    idx = pixels["indices"]
    # indices[:, 0] are the dataset's image indices, not positions in the batch
    assert set(idx[:, 0].tolist()) <= set(IMAGE_IDX.tolist())
    assert len(set(idx[:, 0].tolist())) == N
    local = local_image(idx[:, 0])
    y, x = idx[:, 1], idx[:, 2]
    assert torch.equal(pixels["image"], batch["image"][local, y, x])
    assert torch.equal(pixels["image"][:, 0], local / 10.0)
    assert torch.equal(pixels["parsing"], batch["parsing"][local, y, x])
    assert pixels["parsing"].dtype == torch.uint8
    assert torch.equal(pixels["audio_region"][:, 0], in_region(idx))
    assert "image_idx" not in pixels and "full_image" not in pixels


def test_keep_full_image_passes_the_batch_images():
    (pixels,) = draw(RegionPixelSamplerConfig(num_rays_per_batch=100, keep_full_image=True), 1)
    assert torch.equal(pixels["full_image"], make_batch()["image"])


def test_uniform_mode_draws_the_region_at_its_area_fraction():
    out = draw(RegionPixelSamplerConfig(num_rays_per_batch=2000, overlap_fraction=0.4, audio_region_fraction=-1), 20)
    idx = torch.cat([p["indices"] for p in out])
    groups = torch.cat([p["ray_group"] for p in out])
    inside = in_region(idx)
    # 40000 draws: the standard error of the fraction is about 0.0011
    assert inside.float().mean().item() == pytest.approx(AREA_FRACTION, abs=0.006)
    assert inside[groups == AUDIO_ONLY].all()
    assert not inside[groups == OTHER_ONLY].any()
    assert (groups == OVERLAP).float().mean().item() == pytest.approx(0.4, abs=0.01)
    assert local_image(idx[:, 0]).bincount(minlength=N).min().item() > 12000


@pytest.mark.parametrize("epsilon", [0.0, 0.2, 0.6, 1.0])
def test_overlap_fraction_is_honoured(epsilon):
    for pixels in draw(RegionPixelSamplerConfig(num_rays_per_batch=1000, overlap_fraction=epsilon), 3):
        inside = in_region(pixels["indices"])
        groups = pixels["ray_group"]
        assert inside.sum().item() == 250
        for member in (inside, ~inside):
            assert (groups[member] == OVERLAP).float().mean().item() == pytest.approx(epsilon, abs=0.005)
        if epsilon == 1.0:
            assert (groups == OVERLAP).all()


def test_empty_region_sends_every_ray_to_the_other_field():
    torch.manual_seed(0)
    sampler = RegionPixelSamplerConfig(num_rays_per_batch=300, overlap_fraction=0.0).setup()
    batch = make_batch()
    batch["audio_region"] = torch.zeros_like(batch["audio_region"])
    pixels = sampler.sample(batch)
    assert pixels["indices"].shape == (300, 3)
    assert (pixels["ray_group"] == OTHER_ONLY).all()


def test_region_covering_every_pixel_is_rejected():
    sampler = RegionPixelSamplerConfig(num_rays_per_batch=100).setup()
    batch = make_batch()
    batch["audio_region"] = torch.ones_like(batch["audio_region"])
    with pytest.raises(ValueError, match="every pixel"):
        sampler.sample(batch)


@pytest.mark.parametrize(
    "settings",
    [
        {"overlap_fraction": 1.5},
        {"overlap_fraction": -0.1},
        {"audio_region_fraction": 1.2},
        {"audio_region_fraction": -0.5},
    ],
)
def test_bad_settings_raise(settings):
    with pytest.raises(ValueError):
        RegionPixelSamplerConfig(**settings).setup()


def test_batch_without_region_map_raises_a_clear_key_error():
    sampler = RegionPixelSamplerConfig(num_rays_per_batch=100).setup()
    batch = make_batch()
    del batch["audio_region"]
    with pytest.raises(KeyError, match="audio_region"):
        sampler.sample(batch)

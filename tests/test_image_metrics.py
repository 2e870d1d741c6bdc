import torch

from aenerf_ns.utils.image_metrics import masked_psnr, psnr, ssim


def test_metrics_reward_identity_and_punish_noise():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 32, 3, generator=g)
    noisy = (img + 0.1 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    assert ssim(img, img) > 0.999
    assert ssim(noisy, img) < 0.95
    assert psnr(img, img) > 90
    assert 15 < psnr(noisy, img) < 25
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:8] = True
    half = img.clone()
    half[8:] = 0
    assert masked_psnr(half, img, mask) > 90
    assert psnr(half, img) < 15

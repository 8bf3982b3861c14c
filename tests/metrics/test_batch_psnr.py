import pytest
import torch

from genforge.metrics.psnr_ssim import batch_psnr


def translation_psnr(fake, real):  # the formula tasks/translation.py used before batch_psnr
    fake = ((fake.clamp(-1, 1) + 1) * 127.5).round()
    real = ((real + 1) * 127.5).round()
    mse = ((fake - real) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(255.0 ** 2 / mse)).mean()


def superres_psnr(sr, hr, shave):  # the formula tasks/superres.py used before batch_psnr
    sr = (sr.clamp(0, 1) * 255).round()
    hr = hr * 255
    if shave:
        sr, hr = sr[..., shave:-shave, shave:-shave], hr[..., shave:-shave, shave:-shave]
    mse = ((sr - hr) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(255.0 ** 2 / mse)).mean()


def targets(shape, seed):
    """8-bit images as the tasks see them, and outputs near them that overshoot the range."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, shape, generator=g).float()
    return pixels, pixels + 12 * torch.randn(shape, generator=g)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (5, 3, 24, 20), (4, 1, 17, 13)])
def test_equals_the_translation_formula(shape):
    pixels, noisy = targets(shape, 0)
    real, fake = pixels / 127.5 - 1, noisy / 127.5 - 1
    got = batch_psnr(fake, real, value_range=(-1, 1), round_real=True)
    assert got.shape == () and torch.equal(got, translation_psnr(fake, real))
    assert torch.equal(batch_psnr(real, real, value_range=(-1, 1), round_real=True), translation_psnr(real, real))


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (5, 3, 24, 20), (4, 1, 17, 13)])
@pytest.mark.parametrize("shave", [0, 2, 3, 4])
def test_equals_the_superres_formula(shape, shave):
    pixels, noisy = targets(shape, 1)
    hr, sr = pixels / 255, noisy / 255
    got = batch_psnr(sr, hr, shave=shave)
    assert got.shape == () and torch.equal(got, superres_psnr(sr, hr, shave))
    off_grid = hr + 1e-3  # targets not on the 8-bit grid (lighting jitter) are not rounded
    assert torch.equal(batch_psnr(sr, off_grid, shave=shave), superres_psnr(sr, off_grid, shave))


def test_perfect_output_hits_the_mse_floor_not_inf():
    real = torch.rand(2, 3, 8, 8)
    real = (real * 255).round() / 255
    assert float(batch_psnr(real, real)) == pytest.approx(10 * torch.log10(torch.tensor(255.0**2 / 1e-10)).item())

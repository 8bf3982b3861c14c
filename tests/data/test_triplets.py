"""Frame-interpolation data: exact synthetic flows, deterministic batches whose augmentations keep
frames and flows consistent, the fixed holdout split, and the video:/triplets: sources."""

import numpy as np
import pytest
import torch

from genforge.data.io import write_image
from genforge.data.triplets import (
    TripletBatches,
    holdout_triplets,
    read_clips,
    read_triplet_folders,
    split_frames,
    synthetic_triplet,
)
from genforge.errors import UserError
from genforge.metrics.psnr_ssim import batch_psnr
from genforge.models.vfinet import backward_warp
from tests.conftest import make_clip


def texture(h=96, w=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.float32)
    import cv2
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()


def interior_psnr(x: torch.Tensor, y: torch.Tensor, border: int = 12) -> float:
    c = slice(border, -border)
    return float(batch_psnr(x[..., c, c] / 255, y[..., c, c] / 255))


@pytest.mark.parametrize("t", [0.5, 0.3])
def test_synthetic_flows_are_exact(t):
    photo = texture(160, 200)
    a, g, b, f0, f1 = synthetic_triplet(photo, 48, t, np.random.default_rng(1), max_motion=12, patches=0)
    blend = (1 - t) * chw(a) + t * chw(b)
    assert interior_psnr(backward_warp(chw(a), chw(f0)), chw(g)) > interior_psnr(blend, chw(g)) + 8
    assert interior_psnr(backward_warp(chw(b), chw(f1)), chw(g)) > interior_psnr(blend, chw(g)) + 8


def test_batches_are_deterministic_and_augmentations_keep_the_flows(monkeypatch):
    import genforge.data.triplets as triplets
    plain = triplets.synthetic_triplet
    monkeypatch.setattr(triplets, "synthetic_triplet", lambda *a, **k: plain(*a, **{**k, "patches": 0}))
    photos = [texture(160, 200, seed=s) for s in range(3)]
    batches = TripletBatches([], [], photos, patch_size=48, batch_size=6, seed=3, synthetic=1.0, max_motion=10,
                             teacher=False, dis_init=True)
    one, again = batches.batch(5), batches.batch(5)
    assert all(torch.equal(one[k], again[k]) for k in one)
    assert not torch.equal(one["a"], batches.batch(6)["a"])
    assert one["a"].shape == (6, 3, 48, 48) and one["flow"].shape == one["init"].shape == (6, 4, 48, 48)
    assert ((one["t"] > 0) & (one["t"] < 1)).all()
    # flips and time reversal move frames and flows together: the exact flows still warp a onto g
    for k in range(6):
        a, g, b, f = (one[x][k:k + 1] * (255 if x != "flow" else 1) for x in ("a", "g", "b", "flow"))
        t = float(one["t"][k])
        warped = backward_warp(a, f[:, :2])
        blend = (1 - t) * a + t * b
        assert interior_psnr(warped, g) > interior_psnr(blend, g), k


def moving_texture(k: int, w: int, h: int) -> np.ndarray:
    return np.ascontiguousarray(texture(h + 40, w + 40)[2 * k % 40:][:h, k:k + w])


def test_holdout_is_the_end_of_every_clip_and_never_trained_on(tmp_path):
    frames = list(range(50))
    train, held = split_frames(frames, "train"), split_frames(frames, "holdout")
    assert train + held == frames and held == frames[40:]
    make_clip(tmp_path / "c.mp4", 20, scene=moving_texture)
    (clip,) = read_clips(f"video:{tmp_path}", "train")
    assert len(clip.frames) == 16 and clip.frames[0].shape == (48, 64, 3)
    sets = holdout_triplets(f"video:{tmp_path}")
    assert list(sets) == ["c"] and len(sets["c"]) == 1  # frames 16..19: one (k, k+1, k+2) triplet with k even
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no video files"):
        read_clips(f"video:{tmp_path / 'empty'}", "train")


def test_vimeo_layout_with_a_test_list(tmp_path):
    for name in ("00001/0001", "00001/0002", "00002/0001"):
        for i in (1, 2, 3):
            write_image(tmp_path / name / f"im{i}.png", texture(32, 48, seed=i))
    (tmp_path / "tri_testlist.txt").write_text("00001/0002\n")
    assert len(read_triplet_folders(f"triplets:{tmp_path}", "train")) == 2
    (held,) = read_triplet_folders(f"triplets:{tmp_path}", "holdout")
    assert held[0].shape == (32, 48, 3)


def test_vfinet_starts_as_the_classical_warp():
    """Zero-initialised corrections and residual: before training the network's output is the
    time-weighted blend of the frames warped by its starting flows (with dis_init, the DIS ones)."""
    from genforge.models.vfinet import VFINet, VFINetConfig
    torch.manual_seed(0)
    net = VFINet(VFINetConfig(scales=[2, 1], widths=[8, 8], block_convs=1, refine_width=4)).eval()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    flow = 3 * torch.randn(1, 4, 32, 32)
    t = torch.tensor([0.25])
    expected = 0.75 * backward_warp(a, flow[:, :2]) + 0.25 * backward_warp(b, flow[:, 2:])
    torch.testing.assert_close(net(a, b, t, flow), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(a[..., :30], b[..., :30], t)

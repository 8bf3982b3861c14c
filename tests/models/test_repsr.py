"""RepSR and its re-parameterised convolution: the folded network computes what the branches do."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genforge.models.repsr import RepSR, RepSRConfig
from genforge.nn.reparam import RepConv3x3
from tests.conftest import random_folder


def randomised(module: nn.Module, std: float = 0.3) -> nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        p.data.normal_(0, std)
    return module


@pytest.mark.parametrize("cin,cout,expand,edges", [(1, 8, 2, True), (8, 8, 2, True), (8, 4, 0, True),
                                                   (6, 6, 1, False), (4, 8, 0, False)])
def test_summed_kernel_equals_the_branches_border_included(cin, cout, expand, edges):
    conv = randomised(RepConv3x3(cin, cout, expand=expand, edges=edges))
    x = torch.rand(2, cin, 7, 10)
    branches = conv.forward_branches(x)
    assert (conv(x) - branches).abs().max() < 1e-4
    # the border rows and columns are where zero padding of a biased 1x1 output would differ
    assert (conv(x)[..., 0, :] - branches[..., 0, :]).abs().max() < 1e-4
    folded = copy.deepcopy(conv)
    folded.fold_()
    assert [n for n, _ in folded.named_parameters()] == ["fused.weight", "fused.bias"]
    assert (folded(x) - branches).abs().max() < 1e-4


def test_training_through_the_summed_kernel_gives_the_branch_gradients():
    conv = randomised(RepConv3x3(6, 6))
    x = torch.rand(2, 6, 8, 8)
    params = list(conv.parameters())
    fast = torch.autograd.grad(conv(x).square().sum(), params)
    slow = torch.autograd.grad(conv.forward_branches(x).square().sum(), params)
    for (name, _), a, b in zip(conv.named_parameters(), fast, slow):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3), name


def test_a_branch_that_is_not_linear_in_x_would_be_caught():
    """The check above is not vacuous: dropping the identity from the kernel is detected."""
    conv = randomised(RepConv3x3(4, 4))
    x = torch.rand(1, 4, 6, 6)
    weight, bias = conv.folded_kernel()
    eye = torch.eye(4)[:, :, None, None] * F.pad(torch.ones(1, 1, 1, 1), (1, 1, 1, 1))
    assert (F.conv2d(x, weight - eye, bias, padding=1) - conv.forward_branches(x)).abs().max() > 0.1


@pytest.mark.parametrize("scale,channels", [(2, 1), (4, 1), (3, 3)])
def test_repsr_starts_as_bicubic_and_folds_exactly(scale, channels):
    net = RepSR(RepSRConfig(scale=scale, channels=channels, width=8, blocks=2))
    x = torch.rand(1, channels, 9, 12)
    bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert (net(x) - bicubic).abs().max() < 1e-6  # the last layer starts at zero
    randomised(net, 0.1)
    expected = net(x)
    folded = copy.deepcopy(net).fold_()
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 + 2  # blocks + 2, and nothing else
    assert expected.shape == (1, channels, 9 * scale, 12 * scale)
    assert (folded(x) - expected).abs().max() < 1e-4
    assert net.receptive_radius == 4


def test_model_folder_loads_folded_and_exports_to_onnx(tmp_path):
    from genforge.deploy.export import OnnxRunner, export_onnx
    from genforge.deploy.pretrained import build_export_module, read_source

    folder = random_folder(tmp_path, "superres", "repsr")
    module = build_export_module(read_source(str(folder)))
    assert not any(isinstance(m, RepConv3x3) and m.fused is None for m in module.modules())
    result = export_onnx(str(folder), tmp_path / "fast.onnx")
    assert all(v <= 1e-4 for v in result["max_abs_diff"].values()), result
    x = torch.rand(1, 1, 10, 14)
    with torch.no_grad():
        assert (OnnxRunner(tmp_path / "fast.onnx")(x) - module(x)).abs().max() <= 1e-4

"""`genforge eval`: --help lists every family's metrics, --summary prints the means only, and
translation models get the checkerboard figure by default."""

import json

import numpy as np

from genforge.evaluate import format_table, metrics_help
from genforge.train import train
from tests.conftest import run_cli, translation_raw


def test_help_lists_every_metric_of_every_family():
    from genforge import registry
    text = metrics_help()
    for family, row in registry.wrappers().items():
        assert f"{family}:" in text
        assert all(m in text for m in row.wrapper.metrics)
    assert "translation: l1, psnr, ssim, checkerboard, fid (on request), kid (on request)" in text
    res = run_cli("eval", "--help")
    flat = " ".join(res.stdout.split())
    assert res.returncode == 0 and "--summary" in flat and "checkerboard" in flat and "eval-sr" in flat
    assert "l1, psnr, ssim" in flat and "coverage" in flat


def test_summary_leaves_out_the_per_image_rows():
    result = {"model": "m", "images": 2, "l1": 0.1, "psnr": 20.0,
              "per_image": {"cat": {"l1": 0.1, "psnr": 20.0}, "dog": {"l1": 0.1, "psnr": 20.0}}}
    full, short = format_table(result), format_table(result, summary=True)
    assert "cat" in full and "cat" not in short and "psnr" in short and "20.0000" in short


def test_eval_of_a_translation_run(tmp_path, write_config):
    raw = translation_raw("pix2pix")
    raw["train"]["steps"] = 2
    run = train(str(write_config(raw)), run_dir=str(tmp_path / "run"), progress=False)
    res = run_cli("eval", run, "--summary", "-o", tmp_path / "e.json")
    assert res.returncode == 0, res.stderr
    assert "checkerboard" in res.stdout and "chelsea" not in res.stdout
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["checkerboard"] > 0 and set(result["per_image"]["chelsea"]) == {"l1", "psnr", "ssim", "checkerboard"}
    # the flat-colour baseline: the holdout targets against one colour, the training photos' mean
    from genforge.data.preprocess import read_run_data
    from genforge.deploy.pretrained import read_source
    cfg = read_source(run).config
    colour = np.round(np.mean([b.reshape(-1, 3).mean(0) for b in read_run_data(cfg, "train").b], axis=0))
    held = read_run_data(cfg, "holdout").b
    assert abs(result["mean_colour_l1"] - np.mean([np.abs(t - colour).mean() / 255 for t in held])) < 1e-9
    mse = [((t - colour) ** 2).mean() for t in held]
    assert abs(result["mean_colour_psnr"] - np.mean([10 * np.log10(255 ** 2 / m) for m in mse])) < 1e-6

"""The real commands in subprocesses: exit codes, files, messages."""

import json
import sys

import pytest
from PIL import Image

import genforge
from genforge.train import train
from tests.conftest import run_cli, tiny_raw


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import yaml
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, raw in {"gan": tiny_raw(), "cgan": tiny_raw(), "vae": tiny_raw("vae")}.items():
        if name == "cgan":
            raw["model"]["num_classes"] = 10
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        out[name] = train(str(path), run_dir=str(root / name), progress=False)
    return out


def test_datasets_lists_bundled_sets():
    res = run_cli("datasets")
    assert res.returncode == 0, res.stderr
    assert "digits" in res.stdout and "1797" in res.stdout and "faces" in res.stdout and "photos" in res.stdout


def test_models_command_and_api_agree():
    res = run_cli("models")
    assert res.returncode == 0
    for m in genforge.list_models():
        assert m["name"] in res.stdout


def test_sample_grid_folder_and_interpolation(runs, tmp_path):
    res = run_cli("sample", runs["gan"], "-n", 16, "-o", tmp_path / "grid.png")
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "grid.png").size == (8 * 10 + 2, 2 * 10 + 2)
    res = run_cli("sample", runs["vae"], "-n", 5, "-o", str(tmp_path / "each") + "/")
    assert res.returncode == 0, res.stderr
    files = sorted((tmp_path / "each").iterdir())
    assert len(files) == 5 and Image.open(files[0]).size == (8, 8)
    res = run_cli("sample", runs["gan"], "--interpolate", 6, "--rows", 3, "-o", tmp_path / "interp.png")
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "interp.png").size == (6 * 10 + 2, 3 * 10 + 2)


def test_sample_is_deterministic_per_seed(runs):
    gen = genforge.load(str(runs["gan"]), device="cpu")
    a, b, c = gen.generate(4, seed=1), gen.generate(4, seed=1), gen.generate(4, seed=2)
    assert (a == b).all() and not (a == c).all()


def test_conditional_labels(runs, tmp_path):
    res = run_cli("sample", runs["cgan"], "--label", 3, "-n", 4, "-o", tmp_path / "threes.png")
    assert res.returncode == 0, res.stderr
    res = run_cli("sample", runs["cgan"], "--label", 10, "-n", 4, "-o", tmp_path / "x.png")
    assert res.returncode == 1 and "out of range" in res.stderr
    res = run_cli("sample", runs["gan"], "--label", 3, "-o", tmp_path / "x.png")
    assert res.returncode == 1 and "not class-conditional" in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_eval_writes_report(runs, tmp_path):
    res = run_cli("eval", runs["cgan"], "--metrics", "fid,kid,coverage,accuracy", "-n", 200)
    assert res.returncode == 0, res.stderr
    report = json.loads((runs["cgan"] / "eval.json").read_text())
    assert report["fid"] > 0 and report["fid_real_halves"] > 0 and "kid" in report
    assert abs(sum(report["coverage"].values()) - 1) < 1e-3 and 0 <= report["accuracy"] <= 1
    assert "fid" in res.stdout


def test_bad_invocations(runs, tmp_path):
    res = run_cli("eval", runs["gan"], "--metrics", "fid,sharpness")
    assert res.returncode == 1 and "unknown metric sharpness" in res.stderr
    res = run_cli("sample", tmp_path / "nothing", "-o", tmp_path / "g.png")
    assert res.returncode == 1 and "no model" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("eval", runs["gan"], "--metrics", "accuracy", "-n", 10)
    assert res.returncode == 1 and "class-conditional" in res.stderr


def test_export_folder_loads_back(runs, tmp_path):
    res = run_cli("export", runs["cgan"], "-o", tmp_path / "folder")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["README.md", "config.json",
                                                                       "model.safetensors"]
    from_run = genforge.load(str(runs["cgan"]), device="cpu").generate(3, label=2)
    from_folder = genforge.load(str(tmp_path / "folder"), device="cpu").generate(3, label=2)
    assert (from_run == from_folder).all()
    res = run_cli("export", runs["cgan"], "-o", tmp_path / "folder")
    assert res.returncode == 1 and "not empty" in res.stderr


def test_python_m_and_console_script_agree():
    import shutil
    exe = shutil.which("genforge", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe is not None
    import subprocess
    assert subprocess.run([exe, "--help"], capture_output=True).returncode == 0


def test_demo_runs_end_to_end(tmp_path):
    res = run_cli("demo", "--steps", 12, "-o", tmp_path / "demo", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("gan_samples.png", "fid_curve.png", "interpolation_bikes.png", "interpolation_bikes_x2.mp4",
                 "chargpt-pydoc.txt", "videogan-movingdigits.gif"):
        assert (tmp_path / "demo" / name).is_file()
    assert (tmp_path / "demo" / "chargpt-pydoc.txt").read_text().startswith("A class definition")
    assert "outputs:" in res.stdout and "fid" in res.stdout

"""Bad model folders, bad configs and checkpoints, and disk faults (issue 13: F8, F9, F10, point 5).

Each is one `error: ...` line and a non-zero exit, never a traceback, and leaves nothing half-written
at the output path; a checkpoint write that fails or is killed half-way leaves the previous checkpoint
whole, and resuming from it gives bit-for-bit the run that was never interrupted."""

import builtins
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

import genforge
from genforge import config as C
from genforge.checkpoint_files import read_source
from genforge.deploy.pretrained import export_folder
from genforge.engine import checkpoint
from genforge.errors import ConfigError, DiskError, UserError
from genforge.train import _end_with_whole_line, train
from tests.conftest import ROOT, assert_same_state, run_cli, tiny_model_folder, tiny_raw, weights


def one_error_line(res, rc=1) -> str:
    assert res.returncode == rc, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def enospc(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class WritesMarker:
    """Unpickled, this would call open(marker, "w")."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


# -- F8: model folders ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("folders"), tiny_raw(), "good")


def broken(good, tmp_path, name, *, weights_bytes=None, config_text=None):
    folder = tmp_path / name
    shutil.copytree(good, folder)
    if weights_bytes is not None:
        (folder / "model.safetensors").write_bytes(weights_bytes)
    if config_text is not None:
        (folder / "config.json").write_bytes(config_text.encode() if isinstance(config_text, str) else config_text)
    return folder


def pickled(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def run_without(good, *sections):
    meta = json.loads((good / "config.json").read_text())
    meta["run"] = {k: v for k, v in meta["run"].items() if k not in sections}
    return json.dumps(meta)


FOLDER_CASES = {  # name -> (what to break, what the error says)
    "empty-weights": (dict(weights_bytes=b""), "model.safetensors is empty"),
    "corrupt-weights": (dict(weights_bytes=b"\x10\x00\x00\x00\x00\x00\x00\x00{\"w\": 1}garbage"),
                        "model.safetensors is not a valid safetensors file"),
    "pickled-weights": (dict(weights_bytes=pickled({"weight": torch.zeros(2)})),
                        "model.safetensors is a pickle (torch.save) file, not safetensors; refusing to unpickle"),
    "no-run": (dict(config_text=lambda good: json.dumps({k: v for k, v in json.loads((good / "config.json").read_text())
                                                         .items() if k != "run"})),
               "config.json has no 'run' section"),
    "no-task": (dict(config_text=lambda good: run_without(good, "task")), "run has no 'task' section"),
    "list": (dict(config_text="[]"), "config.json must hold a JSON object with a 'run' section, not list"),
    "run-null": (dict(config_text=lambda good: json.dumps({**json.loads((good / "config.json").read_text()),
                                                          "run": None})),
                 "run must be a mapping of sections (model, task, data, train), not null"),
    "not-json": (dict(config_text="model: [dcgan"), "config.json is not valid JSON"),
    "not-utf8": (dict(config_text=b"\xff\xfe{}"), "config.json is not UTF-8 text (byte 0xff at offset 0)"),
}


def make_case(good, tmp_path, name):
    how, expected = FOLDER_CASES[name]
    how = {k: (v(good) if callable(v) else v) for k, v in how.items()}
    return broken(good, tmp_path, name, **how), expected


@pytest.mark.parametrize("name", sorted(FOLDER_CASES))
def test_broken_model_folder_is_one_clear_error(good_folder, tmp_path, name):
    folder, expected = make_case(good_folder, tmp_path, name)
    for load in (lambda: read_source(str(folder)), lambda: genforge.load(str(folder), device="cpu"),
                 lambda: export_folder(str(folder), tmp_path / "out")):
        with pytest.raises(UserError) as err:
            load()
        assert str(err.value).startswith(f"cannot read model folder {folder}: ") and expected in str(err.value)
    assert not (tmp_path / "out").exists()


def test_broken_model_folders_through_the_cli(good_folder, tmp_path):
    marker = tmp_path / "marker"
    evil = broken(good_folder, tmp_path, "evil", weights_bytes=pickled({"weight": WritesMarker(marker)}))
    line = one_error_line(run_cli("sample", evil, "-n", 2, "-o", tmp_path / "grid.png"))
    assert line == (f"error: cannot read model folder {evil}: model.safetensors is a pickle (torch.save) file, "
                    "not safetensors; refusing to unpickle it")
    assert not marker.exists() and not (tmp_path / "grid.png").exists()
    folder, expected = make_case(good_folder, tmp_path, "run-null")
    line = one_error_line(run_cli("export", folder, "-o", tmp_path / "m.onnx", "--format", "onnx"))
    assert expected in line and not (tmp_path / "m.onnx").exists()


# -- F9: configs and checkpoints ----------------------------------------------------------------

@pytest.mark.parametrize("override, expected", [
    ("seed=1e40", "config error: seed: Input should be a valid integer"),
    ("seed=1.0e+40", "config error: seed: "),
    ("seed=100000000000000000000000", "config error: seed: Input should be less than 9223372036854775808"),
    ("task.g_optim.betas=[2, 3]", "config error: task.g_optim.betas.0: Input should be less than 1 (got 2)"),
    ("task.d_optim.betas=[0.5, 1.0]", "config error: task.d_optim.betas.1: Input should be less than 1 (got 1.0)"),
    ("task.d_optim.betas=[-0.1, 0.9]", "config error: task.d_optim.betas.0: Input should be greater than or equal"),
    ("train.threads=100000000000000000000", "config error: train.threads: Input should be less than or equal to 1024"),
])
def test_numbers_out_of_range_are_config_errors(write_config, override, expected):
    with pytest.raises(ConfigError) as err:
        C.load_config(write_config(tiny_raw()), [override])
    assert str(err.value).startswith(expected), str(err.value)


def test_non_utf8_yaml(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(tiny_raw()).encode() + "# café\n".encode("latin-1"))
    lines = path.read_bytes().count(b"\n")
    with pytest.raises(ConfigError) as err:
        C.load_config(path)
    assert str(err.value) == (f"config error: {path} line {lines}: not UTF-8 text (byte 0xe9); "
                              "save the file as UTF-8")
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(tiny_raw()).encode())  # a BOM is fine
    assert C.load_config(path).name == "tiny"


def test_duplicate_yaml_keys_are_refused(tmp_path, write_config):
    text = yaml.safe_dump(tiny_raw(), sort_keys=False)
    top = tmp_path / "top.yaml"
    top.write_text(text + "seed: 3\n")
    with pytest.raises(ConfigError) as err:
        C.load_config(top)
    assert str(err.value) == (f"config error: {top} line {text.count(chr(10)) + 1}: duplicate key 'seed' "
                              f"(first given on line {text.splitlines().index('seed: 0') + 1})")
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  steps: 5\n  batch_size: 4\n  steps: 6\n")
    with pytest.raises(ConfigError, match=r"nested.yaml line 4: duplicate key 'steps' \(first given on line 2\)"):
        C.read_yaml(nested)
    flow = tmp_path / "flow.yaml"
    flow.write_text("task: {kind: gan, kind: vae}\n")
    with pytest.raises(ConfigError, match="line 1: duplicate key 'kind'"):
        C.read_yaml(flow)
    with pytest.raises(ConfigError, match="--set .*duplicate key 'learning_rate'"):
        C.load_config(write_config(tiny_raw()), ["task.g_optim={learning_rate: 0.1, learning_rate: 0.2}"])
    merged = tmp_path / "merged.yaml"  # a merge key's values may be overridden: that is what it is for
    merged.write_text("base: &b {steps: 5, batch_size: 4}\ntrain:\n  <<: *b\n  steps: 6\n")
    assert C.read_yaml(merged)["train"] == {"steps": 6, "batch_size": 4}
    res = run_cli("train", top, "--runs", tmp_path / "runs", "--no-progress")
    assert one_error_line(res, rc=2) == f"error: {err.value}"
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A 6-step tiny run done in one go: what every interrupted-and-resumed run must equal."""
    root = tmp_path_factory.mktemp("straight")
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_raw()))
    return cfg, train(str(cfg), run_dir=str(root / "run"), progress=False)


@pytest.mark.parametrize("content, expected", [
    ({"foo": 1}, "is not a genforge checkpoint (no step, task, rng)"),
    (torch.zeros(3), "is not a genforge checkpoint (it holds a Tensor, not a mapping)"),
    ({"step": "x", "task": {}, "rng": {}}, "is not a genforge checkpoint (step is 'x')"),
])
def test_resume_from_a_checkpoint_that_is_not_one(straight, tmp_path, content, expected):
    run = shutil.copytree(straight[1], tmp_path / "run")
    last = checkpoint.latest(run)
    torch.save(content, last)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(UserError) as err:
        train(resume=str(run), overrides=["train.steps=9"], progress=False)
    assert str(err.value) == f"{last} {expected}"
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written
    if isinstance(content, torch.Tensor):
        line = one_error_line(run_cli("train", "--resume", run, "--no-progress"))
        assert line == f"error: {last} {expected}"
        with pytest.raises(UserError, match="not a genforge checkpoint"):
            genforge.load(str(run), device="cpu")


# -- F10: output paths and disks --------------------------------------------------------------------

def test_export_paths_blocked_by_a_file(good_folder, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    with pytest.raises(UserError, match=f"output {blocker} exists and is a file, not a folder"):
        export_folder(str(good_folder), blocker)
    from genforge.deploy.export import export_onnx
    for call in (lambda: export_folder(str(good_folder), blocker / "sub"),
                 lambda: export_onnx(str(good_folder), blocker / "sub" / "m.onnx")):
        with pytest.raises(DiskError, match="it exists and is a file, not a folder|afile is a file, not a folder"):
            call()
    assert blocker.read_text() == "mine"
    line = one_error_line(run_cli("export", good_folder, "-o", blocker))
    assert line == f"error: output {blocker} exists and is a file, not a folder"


def test_export_to_a_full_disk_leaves_nothing(good_folder, tmp_path, monkeypatch):
    import onnx

    from genforge.deploy.export import export_onnx
    monkeypatch.setattr("pathlib.Path.write_bytes", enospc)
    with pytest.raises(DiskError) as err:
        export_folder(str(good_folder), tmp_path / "out")
    assert str(err.value) == f"cannot write model folder {tmp_path / 'out'}: No space left on device"
    monkeypatch.undo()
    monkeypatch.setattr(onnx, "save", enospc)
    with pytest.raises(DiskError) as err:
        export_onnx(str(good_folder), tmp_path / "m.onnx")
    assert str(err.value) == f"cannot write ONNX model {tmp_path / 'm.onnx'}: No space left on device"
    assert list(tmp_path.iterdir()) == []  # no folder, no file, no temporary left behind


def test_train_into_a_file_or_a_read_only_folder(tmp_path, write_config, monkeypatch):
    cfg = write_config(tiny_raw())
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    with pytest.raises(UserError, match=f"run directory {blocker} exists and is a file, not a folder"):
        train(str(cfg), run_dir=str(blocker), progress=False)
    with pytest.raises(DiskError, match=rf"cannot create run directory {blocker}/tiny-\S+: {blocker} is a file"):
        train(str(cfg), runs_root=str(blocker), progress=False)
    original = type(tmp_path).mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", read_only)
    with pytest.raises(DiskError, match=rf"cannot create run directory {tmp_path}/ro/tiny-\S+: Read-only file system$"):
        train(str(cfg), runs_root=str(tmp_path / "ro"), progress=False)
    monkeypatch.undo()
    assert blocker.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "cfg.yaml"]
    line = one_error_line(run_cli("train", cfg, "--run-dir", blocker, "--no-progress"))
    assert line == f"error: run directory {blocker} exists and is a file, not a folder"


def half_then(fail):
    """A torch.save that, from its second call (the second checkpoint) on, writes half the bytes of
    the real file and then calls `fail` (a full disk, a kill)."""
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        fail()

    return save


def test_full_disk_while_training_keeps_the_last_checkpoint(straight, tmp_path, monkeypatch):
    cfg, reference = straight
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", half_then(enospc))
    with pytest.raises(DiskError) as err:
        train(str(cfg), run_dir=str(run), progress=False)
    monkeypatch.undo()
    first = checkpoint.path_for(run, 3)
    assert str(err.value) == (f"cannot write run directory {run}: No space left on device; the last good "
                              f"checkpoint is {first}; free some space and continue with: genforge train "
                              f"--resume {run}")
    assert checkpoint.all_checkpoints(run) == [first] and not list(run.rglob(".tmp-*"))
    assert train(resume=str(run), progress=False) == run
    assert_same_state(weights(reference), weights(run))


def test_full_disk_before_the_first_checkpoint_removes_the_new_run(straight, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", enospc)
    with pytest.raises(DiskError, match=r"No space left on device; no checkpoint had been written, so .*/runs/tiny-\S+ "
                                        "was removed$"):
        train(str(straight[0]), runs_root=str(tmp_path / "runs"), progress=False)
    assert list((tmp_path / "runs").iterdir()) == []
    (tmp_path / "given").mkdir()
    with pytest.raises(DiskError, match="no checkpoint had been written, so .*given was emptied$"):
        train(str(straight[0]), run_dir=str(tmp_path / "given"), progress=False)
    assert list((tmp_path / "given").iterdir()) == []  # given empty, left empty


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")
def test_full_tmpfs_through_the_cli(straight, tmp_path):
    cfg, reference = straight
    disk = tmp_path / "disk"
    disk.mkdir()
    # room for one 150 KB checkpoint with the samples and logs, not for a second
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        line = one_error_line(run_cli("train", cfg, "--run-dir", disk / "run", "--no-progress"))
        assert line.startswith(f"error: cannot write run directory {disk / 'run'}: No space left on device; "
                               f"the last good checkpoint is {checkpoint.path_for(disk / 'run', 3)}")
        run = shutil.copytree(disk / "run", tmp_path / "run")
    finally:
        subprocess.run(["umount", str(disk)])
    assert not list(run.rglob(".tmp-*"))
    assert train(resume=str(run), progress=False) == run
    assert_same_state(weights(reference), weights(run))


# -- point 5: killed in the middle of writing a checkpoint ------------------------------------------

KILLED_MID_WRITE = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from tests.test_faults import half_then
from genforge.train import train
torch.save = half_then(lambda: os.kill(os.getpid(), signal.SIGKILL))
train({cfg!r}, run_dir={run!r}, progress=False)
"""


def test_kill_while_writing_a_checkpoint_leaves_the_previous_one_usable(straight, tmp_path):
    cfg, reference = straight
    run = tmp_path / "run"
    script = textwrap.dedent(KILLED_MID_WRITE.format(root=str(ROOT), cfg=str(cfg), run=str(run)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint.all_checkpoints(run) == [checkpoint.path_for(run, 3)]
    half = list((run / "checkpoints").glob(".tmp-*"))
    assert len(half) == 1 and 0 < half[0].stat().st_size  # the cut write, under a name no reader takes
    state = checkpoint.load_checkpoint(checkpoint.latest(run))
    assert state["step"] == 3
    assert train(resume=str(run), progress=False) == run
    assert_same_state(weights(reference), weights(run))
    assert not list(run.rglob(".tmp-*"))  # the next good write cleared it


def test_a_log_line_cut_by_a_kill_is_dropped_before_resuming(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    _end_with_whole_line(log)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    _end_with_whole_line(log)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'

"""The fuzzing harness's quick mode (bench/fuzz.py --quick, issue 13): a few hundred generated hostile inputs
through the upscale and translate commands, the Python API and the service; none may end in a traceback,
abort a batch or get a 5xx."""

import subprocess
import sys

from tests.conftest import ROOT


def test_quick_fuzz_has_no_traceback_abort_or_5xx():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--quick"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    report = r.stdout + r.stderr
    assert "| category | entry point |" in r.stdout, report[-3000:]
    for entry in ("upscale CLI", "translate CLI", "python API", "service"):
        assert f"\n| {entry} | " in r.stdout, report[-3000:]  # every entry point ran
    assert "Failures:" not in r.stdout and "Traceback" not in report, report[-6000:]
    assert r.returncode == 0, report[-6000:]

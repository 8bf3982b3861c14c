"""What every benchmark script shares: the repository root on sys.path, quiet OpenMP waits,
and writing a results table into README.md between `<!-- bench:NAME -->` markers."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch is imported

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_readme_section(name: str, text: str) -> bool:
    """Replace the text between the README's bench markers for `name`; False if they are absent."""
    readme = ROOT / "README.md"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    content = readme.read_text()
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}{end}{tail}")
    return True


def machine_line() -> str:
    import platform

    import torch
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, 1-minute load average {load:.1f} when written")

"""`genforge eval`: score a model with the metrics its family's wrapper computes (evaluate()), and
the report file and table they share. Super-resolution is scored on benchmark sets by
`genforge eval-sr` (deploy/upscaler.py)."""

import json
from pathlib import Path

from genforge import registry
from genforge.checkpoint_files import save_text
from genforge.deploy.infer import load
from genforge.errors import UserError


def all_metrics() -> tuple[str, ...]:
    """Every metric some family computes, in registration order."""
    names = [m for row in registry.wrappers().values() for m in row.wrapper.metrics]
    return tuple(dict.fromkeys(names))


def metrics_help() -> str:
    """`genforge eval --help`'s list: every family's metrics, its default ones marked."""
    parts = []
    for family, row in registry.wrappers().items():
        wrapper = row.wrapper
        if not wrapper.metrics:  # scored by a command of its own (super-resolution: eval-sr)
            parts.append(f"{family}: none here (its own command)")
            continue
        default = set(wrapper.default_metrics or wrapper.metrics)
        shown = [m if m in default else f"{m} (on request)" for m in wrapper.metrics]
        parts.append(f"{family}: {', '.join(shown)}")
    return "; ".join(parts) + ". Default: every metric not marked (on request)"


def parse_metrics(text: str | None) -> list[str] | None:
    """A comma list of metric names; None (no --metrics) stays None: the model family's own metrics."""
    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    known = all_metrics()
    bad = [m for m in names if m not in known]
    if bad or not names:
        raise UserError(f"unknown metric {', '.join(bad) or '(none)'}; choose from {', '.join(known)}")
    return names


def evaluate(model: str, metrics: list[str] | None, *, n: int = 2000, features: str = "auto", seed: int = 0) -> dict:
    """wrapper.evaluate of the model's family; metrics None: the family's default metrics."""
    wrapper = load(model, "cpu")
    metrics = list(wrapper.default_metrics or wrapper.metrics) if metrics is None else metrics
    bad = [m for m in metrics if m not in wrapper.metrics]
    if bad:
        where = sorted({row.family for row in registry.wrappers().values() if set(bad) & set(row.wrapper.metrics)})
        raise UserError(f"{', '.join(bad)} do not apply to {wrapper.family} models (they apply to: "
                        f"{', '.join(where)} models); for {wrapper.family} models choose from "
                        f"{', '.join(wrapper.metrics) or 'none (see genforge eval-sr for super-resolution)'}")
    return {"model": model, **wrapper.evaluate(metrics, n=n, features=features, seed=seed)}


def write_report(result: dict, model: str, out: str | None) -> Path:
    path = Path(out) if out else (Path(model) / "eval.json" if Path(model).is_dir() and
                                  (Path(model) / "checkpoints").is_dir() else Path("eval.json"))
    save_text(path, json.dumps(result, indent=2) + "\n")
    return path


def format_table(result: dict, *, summary: bool = False) -> str:
    """The report as a two-column table; `summary` leaves out the per-image rows (the means only)."""
    rows = [("metric", "value")]
    for k, v in result.items():
        if isinstance(v, float):
            rows.append((k, f"{v:.4f}"))
        elif isinstance(v, dict) and k == "per_image":
            if summary:
                continue
            rows += [(f"  {name}", " ".join(f"{a} {b:.4f}" for a, b in r.items())) for name, r in v.items()]
        elif isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values()):
            # a table: one row per key (e.g. a data set), one column per inner key (e.g. a method)
            columns = list(dict.fromkeys(c for r in v.values() for c in r))
            rows.append((k, "".join(f"{c:>10}" for c in columns)))
            rows += [(f"  {name}", "".join(f"{r[c]:>10.4f}" if c in r else f"{'':>10}" for c in columns))
                     for name, r in v.items()]
        elif isinstance(v, dict):
            rows.append((k, " ".join(f"{a}:{b}" if isinstance(b, int) else f"{a}:{b:.3f}" for a, b in v.items())))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)

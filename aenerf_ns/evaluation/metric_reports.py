"""How evaluation results leave the program: metrics.json and console table cells (pictures: `mouth_pictures`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from aenerf_ns.utils.atomic_io import atomic_write_bytes


def json_safe(value):
    """`value` with non-finite floats replaced by None (JSON has no NaN), through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def format_metric(value) -> str:
    """A metric as the console tables show it: floats to 4 places, sync reports as "name value" pairs."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(title: str, metrics: dict):
    """A rich table of `metrics`, one row per figure (`format_metric`), as aenerf-eval and aenerf-sample print it."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, format_metric(value))
    return table


def write_report(output_dir: Path, result: dict) -> None:
    """metrics.json (non-finite numbers become null)."""
    atomic_write_bytes(Path(output_dir) / "metrics.json", json.dumps(json_safe(result), indent=2).encode())

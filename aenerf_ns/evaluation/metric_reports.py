"""How evaluation results leave the program: metrics.json, console table cells and the mouth-opening plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from jaxtyping import Float

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


def write_report(output_dir: Path, result: dict) -> None:
    """metrics.json (non-finite numbers become null)."""
    atomic_write_bytes(Path(output_dir) / "metrics.json", json.dumps(json_safe(result), indent=2).encode())


def _unit_range(x) -> np.ndarray:
    """`x` scaled to [0, 1] (all zeros when it is constant)."""
    x = np.asarray(x, float)
    span = x.max() - x.min() if len(x) else 0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def plot_mouth_opening(
    path: Path,
    times: Float[np.ndarray, "n"],
    series: dict[str, Float[np.ndarray, "n"]],
    envelope: Float[np.ndarray, "n"] | None,
) -> None:
    """Mouth opening over time (each series scaled to [0, 1]) with the speech envelope beneath, as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if envelope is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.4 * rows), sharex=True, squeeze=False)
    for name, values in series.items():
        axes[0, 0].plot(times, _unit_range(values), label=name, linewidth=1.4)
    axes[0, 0].set_ylabel("mouth opening (scaled)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    if envelope is not None:
        axes[1, 0].plot(times, envelope, color="0.3", linewidth=1.0)
        axes[1, 0].set_ylabel("speech energy (dB)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())

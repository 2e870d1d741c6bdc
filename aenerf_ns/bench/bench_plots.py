"""The pictures `aenerf-bench` writes: held-out PSNR against training seconds, and every method's held-out frames.

Kept apart from the tables and the run so that matplotlib and PIL load only when the pictures are drawn.
"""

from __future__ import annotations

from pathlib import Path


def plot_curves(path: Path, results: dict[str, dict], roles: dict[str, str]) -> None:
    """Held-out PSNR against training seconds, one line per method, as a PNG (each method keeps its colour
    from run to run: the n-th method of `roles` is matplotlib's colour Cn, from the eleventh on Dark2's)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    styles = {"peer": ":", "ours": "-", "ablation": "--"}
    colours = {name: f"C{k}" if k < 10 else plt.get_cmap("Dark2")((k - 10) % 8) for k, name in enumerate(roles)}
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, r in results.items():
        if "error" in r:
            continue
        seconds = [p["seconds"] for p in r["curve"]]
        values = [p["psnr"] for p in r["curve"]]
        style = styles.get(roles.get(name), "-")
        ax.plot(seconds, values, style, color=colours.get(name), marker="o", markersize=3, label=name)
    ax.set_xlabel("training wall-clock seconds (evaluation excluded)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_grid(path: Path, output: Path, names: list[str]) -> None:
    """Ground truth, then every finished method, on the same four held-out frames (one row each)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from aenerf_ns.utils.atomic_io import atomic_save_png

    rows = []
    truth = next((output / n / "truth_strip.png" for n in names if (output / n / "truth_strip.png").is_file()), None)
    for label, file in [("ground truth", truth)] + [(n, output / n / "strip.png") for n in names]:
        if file is None or not file.is_file():
            continue
        strip = np.array(Image.open(file).convert("RGB"))
        if strip.shape[0] < 128:  # small CPU-preset frames, enlarged to be seen
            factor = -(-128 // strip.shape[0])
            strip = strip.repeat(factor, 0).repeat(factor, 1)
        tag = Image.new("RGB", (150, strip.shape[0]), (255, 255, 255))
        ImageDraw.Draw(tag).text((4, strip.shape[0] // 2 - 6), label, fill=(0, 0, 0))
        rows.append(np.concatenate([np.array(tag), strip], 1))
    if rows:
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        atomic_save_png(path, np.concatenate(rows, 0))

"""One benchmark entry: train a method under a step or time budget, then score it exactly like the others.

Every method is scored by the same code on the same held-out frames (the consecutive frames after the
training part of the clip, each with its own audio): PSNR and SSIM over the image, PSNR over the lower
face (the dataset's audio region), and the lip measures of `lip_scores` read off the rendered frames
by the face mesh: LMD, the mouth opening against the ground truth's, the weight-free sync measure and
SyncNet's LSE-C / LSE-D (when its weights are on disk). Training is `training.train`, which
`aenerf-method-bench` uses too. Timings are wall-clock seconds with GPU work synchronised; memory is the
process's peak resident set on a CPU and the peak allocated CUDA memory on a GPU.

`aenerf-bench` runs each entry as `python -m aenerf_ns.bench.bench_run SETTINGS.json METHOD OUT_DIR` in a process of
its own, so peaks are per method and a crash costs one entry, and writes `OUT_DIR/result.json` last.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras

from aenerf_ns.bench.heldout import HeldoutFrames, render_rgb
from aenerf_ns.bench.training import TrainingBudget, TrainingRun, train


@dataclass
class RunSettings:
    """What every entry of one benchmark run shares."""

    data: str
    """Dataset folder (one identity)."""
    small: bool
    """CPU presets of every method (False: full-size configurations)."""
    train_fraction: float
    """Leading fraction of the clip trained on; the rest is held out."""
    rays: int
    """Rays per training batch, the same for every method."""
    budget_steps: int | None
    """Training steps per method (None: train for `budget_seconds`)."""
    budget_seconds: float | None
    """Training wall-clock seconds per method (evaluation excluded), when no step budget is set."""
    curve_points: int
    """Held-out PSNR measurements spread over the budget (plus one at the start)."""
    curve_frames: int
    """Held-out frames each curve point averages."""
    eval_frames: int
    """Consecutive held-out frames scored at the end."""
    max_offset: int
    """Largest audio-video lag (frames, either way) the sync search considers."""
    scaling: tuple[int, ...]
    """Image heights of the render-cost table (empty: none)."""
    seed: int = 0
    """Random seed of every method."""
    syncnet_weights: str | None = None
    """SyncNet's weights file for LSE-C / LSE-D (None: the default location; skipped when absent)."""

    def key(self) -> str:
        """Identifies these settings, so results of other settings are never reused."""
        return json.dumps(asdict(self), sort_keys=True)

    def training_run(self, label: str, heldout: HeldoutFrames, device: str) -> TrainingRun:
        """Training under the budget, with the held-out PSNR curve measured on `heldout`."""
        budget = TrainingBudget(steps=self.budget_steps, seconds=self.budget_seconds)
        return TrainingRun(
            label=label,
            budget=budget,
            curve_marks=budget.evenly(self.curve_points),
            curve_frames=self.curve_frames,
            reference=heldout,
            seed=self.seed,
            device=device,
        )


@torch.no_grad()
def score_heldout(model, cameras: Cameras, heldout: HeldoutFrames, settings: RunSettings, device: str) -> dict:
    """Render the first `eval_frames` consecutive held-out frames and score them (see the module docstring)."""
    from rich.progress import Progress

    from aenerf_ns.bench.resource_meter import now, synchronize
    from aenerf_ns.utils.image_metrics import masked_psnr, psnr, ssim, to_uint8

    model.eval()
    count = min(settings.eval_frames, len(heldout))
    values: dict[str, list[float]] = {"psnr": [], "ssim": [], "lower_face_psnr": []}
    renders, truths, seconds = [], [], []
    with Progress(transient=True) as progress:
        task = progress.add_task("scoring held-out frames", total=count)
        for i in range(count):
            start = now()
            pred = render_rgb(model, cameras[i : i + 1].to(device))
            synchronize(device)
            seconds.append(now() - start)
            gt, region = (t.to(device) for t in heldout.image_and_lower_face(i))
            values["psnr"].append(float(psnr(pred, gt)))
            values["ssim"].append(float(ssim(pred, gt)))
            if region.any():
                values["lower_face_psnr"].append(float(masked_psnr(pred, gt, region)))
            renders.append(to_uint8(pred))
            truths.append(to_uint8(gt))
            progress.advance(task)
    result = {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()}
    result["eval_frames"] = count
    # the first frame pays one-off costs (allocation, kernel selection); the median is the steady cost
    result["render_seconds_per_frame"] = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    result.update(_lip_scores(renders, truths, heldout, settings, device))
    strip = np.linspace(0, count - 1, min(4, count)).round().astype(int)
    result["_strip"], result["_truth_strip"] = [renders[i] for i in strip], [truths[i] for i in strip]
    return result


def _lip_scores(renders: list, truths: list, heldout: HeldoutFrames, settings: RunSettings, device: str) -> dict:
    """`lip_scores` of the scored frames: LMD, mouth opening, the sync measures (rendered and ground truth)."""
    from aenerf_ns.audio.audio_io import load_audio
    from aenerf_ns.evaluation.lip_scores import lip_scores
    from aenerf_ns.evaluation.mouth_pictures import mouth_closeup_strip
    from aenerf_ns.evaluation.sync_metrics import min_sync_frames
    from aenerf_ns.evaluation.syncnet_score import syncnet_metric

    count = len(renders)
    audio, reason = None, None
    if heldout.audio_path is None:
        reason = "skipped: the dataset has no audio file"
    elif count < min_sync_frames(heldout.fps, settings.max_offset):
        reason = f"skipped: needs at least {min_sync_frames(heldout.fps, settings.max_offset)} frames"
    else:
        audio = load_audio(Path(heldout.audio_path))
    weights = Path(settings.syncnet_weights) if settings.syncnet_weights else None
    syncnet, syncnet_skip = syncnet_metric(weights, device)
    times = (heldout.frame_indices[:count] + 0.5) / heldout.fps
    scores = lip_scores(
        renders,
        truths,
        audio,
        times,
        heldout.fps,
        True,
        settings.max_offset,
        syncnet,
        syncnet_skip,
        reason or "",
        device,
    )
    scores["_closeups"] = mouth_closeup_strip(renders, truths, scores.pop("_reference_landmarks"))
    scores.pop("_rendered_landmarks")
    return scores


@torch.no_grad()
def render_scaling(model, cameras: Cameras, settings: RunSettings, device: str) -> list[dict]:
    """Render one held-out camera at each height of `settings.scaling`: seconds and peak memory added."""
    from aenerf_ns.bench.resource_meter import PeakMemory, now, synchronize

    model.eval()
    rows = []
    height = int(cameras.height[0])
    for k, size in enumerate(settings.scaling):
        camera = cameras[0:1].to(device)
        camera.rescale_output_resolution(size / height)
        if k == 0:
            render_rgb(model, camera)  # one-off costs are not part of any size's figure
        with PeakMemory(device) as memory:
            start = now()
            render_rgb(model, camera)
            synchronize(device)
            seconds = now() - start
        rows.append({"height": size, "seconds": seconds, "added_mb": memory.added_mb, "peak_mb": memory.peak_mb})
    return rows


def run_method(name: str, settings: RunSettings, out_dir: Path) -> dict:
    """Train and score one method; writes `result.json` (last), `strip.png` and `mouth_closeup.png` (truth above
    render at the widest openings) into `out_dir`."""
    from aenerf_ns.bench.bench_methods import bench_method
    from aenerf_ns.bench.network_evaluations import network_evaluations
    from aenerf_ns.bench.resource_meter import peak_resident_mb
    from aenerf_ns.evaluation.metric_reports import json_safe
    from aenerf_ns.utils.atomic_io import atomic_save_png, atomic_write_bytes

    device = "cuda" if torch.cuda.is_available() else "cpu"
    method = bench_method(name)
    heldout = HeldoutFrames.read(Path(settings.data), settings.train_fraction)
    config = method.build(Path(settings.data), settings.small, settings.train_fraction, settings.rays)
    trained = train(config, settings.training_run(name, heldout, device))
    model = trained.pipeline.model
    scores = score_heldout(model, trained.cameras, heldout, settings, device)
    scaling = render_scaling(model, trained.cameras, settings, device) if method.in_scaling else []
    counted = method.in_scaling and method.ray_based
    evaluations = network_evaluations(model, trained.cameras[0:1].to(device)) if counted else None
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_png(out_dir / "strip.png", np.concatenate(scores.pop("_strip"), 1))
    atomic_save_png(out_dir / "truth_strip.png", np.concatenate(scores.pop("_truth_strip"), 1))
    closeups = scores.pop("_closeups")
    if closeups is not None:
        atomic_save_png(out_dir / "mouth_closeup.png", closeups)
    result = {
        "method": name,
        "role": method.role,
        "summary": method.summary,
        "settings_key": settings.key(),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "steps": trained.steps,
        "train_seconds": trained.train_seconds,
        "train_seconds_per_1k_steps": 1000.0 * trained.train_seconds / max(trained.steps, 1),
        "train_peak_mb": trained.train_peak_mb,
        "process_peak_mb": peak_resident_mb() if device == "cpu" else trained.train_peak_mb,
        "curve": [asdict(point) for point in trained.curve],
        **scores,
        "scaling": scaling,
        "network_evaluations": evaluations,
    }
    atomic_write_bytes(out_dir / "result.json", json.dumps(json_safe(result), indent=2).encode())
    return result


def main(argv: list[str]) -> int:
    settings_path, name, out_dir = argv
    raw = json.loads(Path(settings_path).read_text())
    raw["scaling"] = tuple(raw["scaling"])
    settings = RunSettings(**raw)
    try:
        run_method(name, settings, Path(out_dir))
    except Exception as error:  # reported by aenerf-bench; the other methods still run
        traceback.print_exc()
        from aenerf_ns.utils.atomic_io import atomic_write_bytes

        failure = {"method": name, "settings_key": settings.key(), "error": f"{type(error).__name__}: {error}"}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out_dir) / "failed.json", json.dumps(failure, indent=2).encode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`aenerf-method-bench`: the AE-NeRF claims, measured on synthetic identities on any machine.

Prints three results (and writes them to `results.json` in the output folder):

1. Audio: the full model against the "without AAA and without audio" variant, trained with the same
   steps on the same identity and scored on held-out frames that speak their own, unseen audio. Prints
   both lower-face errors (MSE) and their ratio, and the correlation of rendered with true mouth opening.
2. Few-shot: a base model pretrained on several identities is fine-tuned on a new identity's short clip;
   a model of the same settings trains on that clip from scratch. Both score held-out PSNR every
   `eval_every` steps; printed are the steps each needs to reach the scratch model's final PSNR.
3. Fields: the positional-encoding MLP and the hash-grid option train the full model on the same clip;
   held-out PSNR is recorded against training seconds, and printed is the PSNR each reaches within the
   same wall-clock budget (quality per minute).
4. SSP-NeRF: ssp-nerf against its two ablations (uniform ray sampling; no torso deformation) and
   against aenerf, all with the same steps on the same identity, scored on held-out frames: torso-area
   and mouth-area errors (the two regions SSP-NeRF's modules target), lower-face and full-image PSNR.
5. Speed: training milliseconds per iteration of every run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro


@dataclass
class MethodBenchArgs:
    """Measure AE-NeRF's audio conditioning and base-model fine-tuning on synthetic identities."""

    output: Path = Path("outputs/method_bench")
    """Folder for the synthetic data, checkpoints and results.json."""
    steps: int = 3000
    """Training steps of the audio comparison (both models; the mouth gap shows once the rest is sharp)."""
    base_steps: int = 1500
    """Pretraining steps of the multi-identity base model."""
    finetune_steps: int = 500
    """Steps of the fine-tuning and of the from-scratch run on the new identity."""
    eval_every: int = 50
    """Held-out PSNR is measured every this many steps in the few-shot comparison."""
    base_identities: int = 3
    """Identities the base model is pretrained on (the new identity is never among them)."""
    resolution: int = 96
    """Image size of the synthetic clips."""
    seconds: float = 10.0
    """Length of each synthetic clip."""
    few_shot_fraction: float = 0.4
    """Leading fraction of the new identity's clip it is fine-tuned on (0.4 of 10 s = 4 s)."""
    position_encoding: Literal["positional", "hashgrid"] = "positional"
    """Field option the runs use."""
    eval_frames: int = 25
    """Held-out frames scored in the audio comparison."""
    field_steps: int = 800
    """Steps of each run in the field comparison (positional vs hash grid)."""
    ssp_steps: int = 1500
    """Training steps of each run in the SSP-NeRF comparison."""
    skip: tuple[str, ...] = ()
    """Parts to skip: 'audio', 'fewshot', 'fields', 'ssp'."""


def _config(
    data: Path,
    args: MethodBenchArgs,
    train_fraction: float = 0.5,
    method: Literal["aenerf", "ssp-nerf"] = "aenerf",
    semantic_aware: bool = True,
    **model,
):
    """The CPU preset of `method` on `data`, with model settings overridden by `model`."""
    if method == "aenerf":
        from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config as tiny_config
    else:
        from aenerf_ns.method_configs.ssp_nerf_methods import ssp_nerf_tiny_config as tiny_config
    config = tiny_config()
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.dataparser.data = data
    config.pipeline.datamanager.dataparser.train_fraction = train_fraction
    if method == "ssp-nerf":
        config.pipeline.datamanager.pixel_sampler.semantic_aware = semantic_aware
    config.pipeline.model.position_encoding = args.position_encoding
    for key, value in model.items():
        setattr(config.pipeline.model, key, value)
    return config


def heldout_psnr(pipeline, frames: int = 4) -> float:
    """Mean PSNR over `frames` evenly spaced held-out frames (full images, their own audio)."""
    import numpy as np
    import torch

    from aenerf_ns.utils.image_metrics import psnr

    model = pipeline.model
    was_training = model.training
    model.eval()
    dataset = pipeline.datamanager.eval_dataset
    picks = np.unique(np.linspace(0, len(dataset) - 1, frames).round().astype(int))
    scores = []
    with torch.no_grad():
        for i in picks:
            camera = dataset.cameras[int(i) : int(i) + 1].to(model.device)
            out = model.get_outputs_for_camera(camera)
            scores.append(float(psnr(out["rgb"], dataset[int(i)]["image"][..., :3].to(model.device))))
    model.train(was_training)
    return float(np.mean(scores))


def train(
    config,
    steps: int,
    label: str,
    eval_every: int = 0,
    checkpoint: Path | None = None,
    seed: int = 0,
    callbacks: bool = False,
):
    """Train a pipeline in-process; returns (pipeline, ms per step, [(step, held-out PSNR)]).

    `callbacks` runs the model's training callbacks (SSP-NeRF's sampler feedback).
    """
    import torch
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes
    from nerfstudio.engine.optimizers import Optimizers
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from aenerf_ns.bench.bench_run import train_step

    torch.manual_seed(seed)
    config.max_num_iterations = steps
    for group in config.optimizers.values():
        group["scheduler"].max_steps = steps
    pipeline = config.pipeline.setup(device="cpu" if not torch.cuda.is_available() else "cuda", test_mode="val")
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
    model_callbacks = []
    if callbacks:
        attributes = TrainingCallbackAttributes(optimizers, None, pipeline, None)
        model_callbacks = pipeline.get_training_callbacks(attributes)
    curve = []  # (step, held-out PSNR, training seconds so far)
    train_seconds = 0.0
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(label, total=steps)
        for step in range(steps):
            if eval_every and step % eval_every == 0:
                curve.append((step, heldout_psnr(pipeline), train_seconds))
            start = time.perf_counter()
            train_step(pipeline, optimizers, model_callbacks, step)
            train_seconds += time.perf_counter() - start
            progress.advance(task)
    if eval_every:
        curve.append((steps, heldout_psnr(pipeline), train_seconds))
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"step": steps - 1, "pipeline": pipeline.state_dict()}, tmp)
        tmp.replace(checkpoint)
    return pipeline, 1000.0 * train_seconds / max(steps, 1), curve


def steps_to_reach(curve: list[tuple[int, float, float]], target: float) -> int | None:
    """First evaluated step whose held-out PSNR is at least `target`."""
    for step, value, _ in curve:
        if value >= target:
            return step
    return None


def psnr_within(curve: list[tuple[int, float, float]], seconds: float) -> float:
    """Best held-out PSNR measured within `seconds` of training time."""
    return max(value for _, value, spent in curve if spent <= seconds + 1e-9)


def main(args: MethodBenchArgs) -> dict:
    from rich.console import Console
    from rich.table import Table

    from aenerf_ns.evaluation.evaluate import evaluate_heldout
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    console = Console()
    data = args.output / "data"
    if not all((data / f"synth{i:02d}" / "transforms.json").is_file() for i in range(args.base_identities + 1)):
        write_synthetic_sample(
            data, identities=args.base_identities + 1, seconds=args.seconds, resolution=args.resolution
        )
    results: dict = {"settings": {k: str(v) for k, v in vars(args).items()}}

    if "audio" not in args.skip:
        target = data / "synth00"
        runs = {
            "full": _config(target, args),
            "no_aaa_no_audio": _config(target, args, use_aaa=False, use_audio=False),
        }
        audio = {}
        for name, config in runs.items():
            pipeline, ms, _ = train(config, args.steps, f"audio: {name}")
            metrics = evaluate_heldout(pipeline, args.output / "audio" / name, max_frames=args.eval_frames)
            audio[name] = dict(metrics, ms_per_step=ms)
        ratio = audio["full"]["lower_face_mse"] / audio["no_aaa_no_audio"]["lower_face_mse"]
        results["audio"] = dict(audio, lower_face_error_ratio=ratio)
        table = Table(title=f"Held-out frames with unseen audio, {args.steps} steps each ({args.position_encoding})")
        for col in ("model", "lower-face MSE", "lower-face PSNR", "PSNR", "mouth-open corr.", "ms/step"):
            table.add_column(col, justify="right")
        for name, m in audio.items():
            table.add_row(
                name,
                f"{m['lower_face_mse']:.5f}",
                f"{m['lower_face_psnr']:.2f}",
                f"{m['psnr']:.2f}",
                f"{m.get('mouth_open_correlation', float('nan')):.3f}",
                f"{m['ms_per_step']:.0f}",
            )
        console.print(table)
        console.print(f"lower-face error ratio, full / audio-blind: [bold]{ratio:.3f}[/bold]")

    if "fewshot" not in args.skip:
        base_data = args.output / "base_identities"
        base_data.mkdir(parents=True, exist_ok=True)
        for i in range(1, args.base_identities + 1):
            link = base_data / f"synth{i:02d}"
            if not link.exists():
                link.symlink_to((data / f"synth{i:02d}").resolve())
        ckpt = args.output / "base" / "step-base.ckpt"
        base_ms = None
        if not ckpt.is_file():
            _, base_ms, _ = train(_config(base_data, args), args.base_steps, "base model", checkpoint=ckpt)
        new = data / "synth00"
        frac = args.few_shot_fraction
        _, ft_ms, ft_curve = train(
            _config(new, args, train_fraction=frac, load_base=ckpt), args.finetune_steps, "fine-tune", args.eval_every
        )
        _, sc_ms, sc_curve = train(
            _config(new, args, train_fraction=frac), args.finetune_steps, "scratch", args.eval_every
        )
        target = sc_curve[-1][1]
        ft_steps, sc_steps = steps_to_reach(ft_curve, target), steps_to_reach(sc_curve, target)
        results["fewshot"] = {
            "target_psnr": target,
            "finetune_steps_to_target": ft_steps,
            "scratch_steps_to_target": sc_steps,
            "finetune_curve": ft_curve,
            "scratch_curve": sc_curve,
            "base_ms_per_step": base_ms,
            "finetune_ms_per_step": ft_ms,
            "scratch_ms_per_step": sc_ms,
        }
        table = Table(title=f"New identity, {args.seconds * frac:.0f} s clip: held-out PSNR by step")
        table.add_column("step", justify="right")
        table.add_column("fine-tuned from base", justify="right")
        table.add_column("from scratch", justify="right")
        for (step, ft, _), (_, sc, _) in zip(ft_curve, sc_curve):
            table.add_row(str(step), f"{ft:.2f}", f"{sc:.2f}")
        console.print(table)
        console.print(
            f"steps to reach {target:.2f} dB (the scratch run's final PSNR): fine-tuned {ft_steps}, scratch {sc_steps}"
        )

    if "fields" not in args.skip:
        target = data / "synth00"
        curves, speeds = {}, {}
        for option in ("positional", "hashgrid"):
            config = _config(target, args, position_encoding=option)
            _, speeds[option], curves[option] = train(config, args.field_steps, f"fields: {option}", args.eval_every)
        budget = min(curve[-1][2] for curve in curves.values())
        reached = {option: psnr_within(curve, budget) for option, curve in curves.items()}
        results["fields"] = {"budget_seconds": budget, "psnr_within_budget": reached, "ms_per_step": speeds}
        results["fields"]["curves"] = curves
        table = Table(title=f"Field options, full model: held-out PSNR within {budget:.0f} s of training")
        for col in ("field", "ms/step", f"PSNR within {budget:.0f} s", f"PSNR after {args.field_steps} steps"):
            table.add_column(col, justify="right")
        for option in curves:
            row = (option, f"{speeds[option]:.0f}", f"{reached[option]:.2f}", f"{curves[option][-1][1]:.2f}")
            table.add_row(*row)
        console.print(table)
        console.print(f"better quality per minute here: [bold]{max(reached, key=reached.get)}[/bold]")

    if "ssp" not in args.skip:
        target = data / "synth00"
        runs = {
            "ssp-nerf": _config(target, args, method="ssp-nerf"),
            "ssp/uniform-rays": _config(target, args, method="ssp-nerf", semantic_aware=False),
            "ssp/no-torso-def": _config(target, args, method="ssp-nerf", use_torso_deformation=False),
            "aenerf": _config(target, args),
        }
        ssp = {}
        for name, config in runs.items():
            pipeline, ms, _ = train(config, args.ssp_steps, f"ssp: {name}", callbacks=True)
            folder = args.output / "ssp" / name.replace("/", "-")
            ssp[name] = dict(evaluate_heldout(pipeline, folder, max_frames=args.eval_frames), ms_per_step=ms)
        results["ssp"] = ssp
        table = Table(title=f"SSP-NeRF vs ablations vs AE-NeRF: held-out frames, {args.ssp_steps} steps each")
        cols = ("model", "torso MSE", "torso PSNR", "mouth MSE", "mouth PSNR", "lower-face PSNR", "PSNR", "ms/step")
        for col in cols:
            table.add_column(col, justify="right")
        for name, m in ssp.items():
            nan = float("nan")
            table.add_row(
                name,
                f"{m.get('torso_mse', nan):.5f}",
                f"{m.get('torso_psnr', nan):.2f}",
                f"{m.get('mouth_mse', nan):.5f}",
                f"{m.get('mouth_psnr', nan):.2f}",
                f"{m['lower_face_psnr']:.2f}",
                f"{m['psnr']:.2f}",
                f"{m['ms_per_step']:.0f}",
            )
        console.print(table)

    atomic_write_bytes(args.output / "results.json", json.dumps(results, indent=2).encode())
    console.print(f"results: {args.output / 'results.json'}")
    return results


def entrypoint() -> None:
    main(tyro.cli(MethodBenchArgs))


if __name__ == "__main__":
    entrypoint()

"""The comparisons `aenerf-method-bench` runs, each training its models on the synthetic identities and printing
its table: audio conditioning, few-shot fine-tuning, field options, SSP-NeRF's modules, and the ablation (Table 4).

Each part takes the command's settings (`method_bench_suite.MethodBenchArgs`), the data folder and a console, and
returns the figures it found, which go to results.json under the part's name (`PARTS`, in running order).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aenerf_ns.bench.bench_methods import OurMethod, our_method_config
from aenerf_ns.bench.method_bench_tables import number_cell, print_table, psnr_within, steps_to_reach

if TYPE_CHECKING:
    from aenerf_ns.bench.method_bench_suite import MethodBenchArgs


def _config(
    data: Path,
    args: MethodBenchArgs,
    method: OurMethod = "aenerf",
    train_fraction: float = 0.5,
    sampler: dict | None = None,
    **model,
):
    """The CPU preset of `method` on `data` with the chosen field option, then the `model` and `sampler` settings."""
    model = {"position_encoding": args.position_encoding, **model}
    return our_method_config(method, data, small=True, train_fraction=train_fraction, model=model, sampler=sampler)


def _train(config, steps: int, label: str, eval_every: int = 0, checkpoint: Path | None = None):
    """Train for `steps` steps; with `eval_every`, held-out PSNR is measured every that many steps."""
    from aenerf_ns.bench.training import TrainingBudget, TrainingRun, train

    budget = TrainingBudget(steps=steps)
    marks = budget.every(eval_every) if eval_every else None
    return train(config, TrainingRun(label=label, budget=budget, curve_marks=marks, checkpoint=checkpoint))


def _curve(trained) -> list[tuple[int, float, float]]:
    """The training's held-out PSNR curve as (step, PSNR, training seconds so far)."""
    return [(point.step, point.psnr, point.seconds) for point in trained.curve]


def _scored(trained, folder: Path, frames: int) -> dict:
    """Held-out metrics of a trained pipeline (aenerf-eval's), with its training milliseconds per step."""
    from aenerf_ns.evaluation.evaluate import evaluate_heldout

    return dict(evaluate_heldout(trained.pipeline, folder, max_frames=frames), ms_per_step=trained.ms_per_step)


def audio_part(args: MethodBenchArgs, data: Path, console) -> dict:
    """The full model against the one without audio (and so without AAA), scored on unseen audio."""
    target = data / "synth00"
    runs = {
        "full": _config(target, args),
        "no_aaa_no_audio": _config(target, args, use_aaa=False, use_audio=False),
    }
    audio = {}
    for name, config in runs.items():
        trained = _train(config, args.steps, f"audio: {name}")
        audio[name] = _scored(trained, args.output / "audio" / name, args.eval_frames)
    ratio = audio["full"]["lower_face_mse"] / audio["no_aaa_no_audio"]["lower_face_mse"]
    rows = [
        (
            name,
            f"{m['lower_face_mse']:.5f}",
            f"{m['lower_face_psnr']:.2f}",
            f"{m['psnr']:.2f}",
            f"{m.get('mouth_open_correlation', float('nan')):.3f}",
            f"{m['ms_per_step']:.0f}",
        )
        for name, m in audio.items()
    ]
    title = f"Held-out frames with unseen audio, {args.steps} steps each ({args.position_encoding})"
    columns = ("model", "lower-face MSE", "lower-face PSNR", "PSNR", "mouth-open corr.", "ms/step")
    print_table(console, title, columns, rows)
    console.print(f"lower-face error ratio, full / audio-blind: [bold]{ratio:.3f}[/bold]")
    return dict(audio, lower_face_error_ratio=ratio)


def _base_identities(args: MethodBenchArgs, data: Path) -> Path:
    """A folder linking the identities the base model pretrains on (never the new one, synth00)."""
    base_data = args.output / "base_identities"
    base_data.mkdir(parents=True, exist_ok=True)
    for i in range(1, args.base_identities + 1):
        link = base_data / f"synth{i:02d}"
        if not link.exists():
            link.symlink_to((data / f"synth{i:02d}").resolve())
    return base_data


def fewshot_part(args: MethodBenchArgs, data: Path, console) -> dict:
    """Fine-tuning a multi-identity base model on a new identity's short clip against training from scratch."""
    ckpt = args.output / "base" / "step-base.ckpt"
    base_ms = None
    if not ckpt.is_file():
        base = _train(_config(_base_identities(args, data), args), args.base_steps, "base model", checkpoint=ckpt)
        base_ms = base.ms_per_step
    new, frac, steps = data / "synth00", args.few_shot_fraction, args.finetune_steps
    finetuned = _train(_config(new, args, train_fraction=frac, load_base=ckpt), steps, "fine-tune", args.eval_every)
    scratch = _train(_config(new, args, train_fraction=frac), steps, "scratch", args.eval_every)
    ft_curve, sc_curve = _curve(finetuned), _curve(scratch)
    target = sc_curve[-1][1]
    ft_steps, sc_steps = steps_to_reach(ft_curve, target), steps_to_reach(sc_curve, target)
    rows = [(str(step), f"{ft:.2f}", f"{sc:.2f}") for (step, ft, _), (_, sc, _) in zip(ft_curve, sc_curve)]
    title = f"New identity, {args.seconds * frac:.0f} s clip: held-out PSNR by step"
    print_table(console, title, ("step", "fine-tuned from base", "from scratch"), rows)
    console.print(
        f"steps to reach {target:.2f} dB (the scratch run's final PSNR): fine-tuned {ft_steps}, scratch {sc_steps}"
    )
    return {
        "target_psnr": target,
        "finetune_steps_to_target": ft_steps,
        "scratch_steps_to_target": sc_steps,
        "finetune_curve": ft_curve,
        "scratch_curve": sc_curve,
        "base_ms_per_step": base_ms,
        "finetune_ms_per_step": finetuned.ms_per_step,
        "scratch_ms_per_step": scratch.ms_per_step,
    }


def fields_part(args: MethodBenchArgs, data: Path, console) -> dict:
    """The tri-plane, hash-grid and positional-encoding fields: held-out PSNR within the same training seconds."""
    curves, speeds = {}, {}
    for option in ("triplane", "hashgrid", "positional"):
        config = _config(data / "synth00", args, position_encoding=option)
        trained = _train(config, args.field_steps, f"fields: {option}", args.eval_every)
        curves[option], speeds[option] = _curve(trained), trained.ms_per_step
    budget = min(curve[-1][2] for curve in curves.values())
    reached = {option: psnr_within(curve, budget) for option, curve in curves.items()}
    title = f"Field options, full model: held-out PSNR within {budget:.0f} s of training"
    columns = ("field", "ms/step", f"PSNR within {budget:.0f} s", f"PSNR after {args.field_steps} steps")
    rows = [(o, f"{speeds[o]:.0f}", f"{reached[o]:.2f}", f"{curves[o][-1][1]:.2f}") for o in curves]
    print_table(console, title, columns, rows)
    console.print(f"better quality per minute here: [bold]{max(reached, key=reached.get)}[/bold]")
    return {"budget_seconds": budget, "psnr_within_budget": reached, "ms_per_step": speeds, "curves": curves}


def ssp_part(args: MethodBenchArgs, data: Path, console) -> dict:
    """SSP-NeRF against its two ablations and AE-NeRF, on the regions SSP-NeRF's modules target."""
    target = data / "synth00"
    runs = {
        "ssp-nerf": _config(target, args, method="ssp-nerf"),
        "ssp/uniform-rays": _config(target, args, method="ssp-nerf", sampler={"semantic_aware": False}),
        "ssp/no-torso-def": _config(target, args, method="ssp-nerf", use_torso_deformation=False),
        "aenerf": _config(target, args),
    }
    ssp = {}
    for name, config in runs.items():
        trained = _train(config, args.ssp_steps, f"ssp: {name}")
        ssp[name] = _scored(trained, args.output / "ssp" / name.replace("/", "-"), args.eval_frames)
    nan = float("nan")
    rows = [
        (
            name,
            f"{m.get('torso_mse', nan):.5f}",
            f"{m.get('torso_psnr', nan):.2f}",
            f"{m.get('mouth_mse', nan):.5f}",
            f"{m.get('mouth_psnr', nan):.2f}",
            f"{m['lower_face_psnr']:.2f}",
            f"{m['psnr']:.2f}",
            f"{m['ms_per_step']:.0f}",
        )
        for name, m in ssp.items()
    ]
    title = f"SSP-NeRF vs ablations vs AE-NeRF: held-out frames, {args.ssp_steps} steps each"
    columns = ("model", "torso MSE", "torso PSNR", "mouth MSE", "mouth PSNR", "lower-face PSNR", "PSNR", "ms/step")
    print_table(console, title, columns, rows)
    return ssp


ABLATIONS: dict[str, dict] = {
    "full": {},
    "w/o AAA": {"use_aaa": False},
    "w/o AAFG": {"use_dual_fields": False},
    "w/o Warper": {"use_warper": False},
}
"""The paper's Table 4 rows: model settings that differ from the full AE-NeRF."""


def _cross_audio(args: MethodBenchArgs, data: Path) -> list[Path]:
    """The speech files of the cross-driven rows: `--cross-audio`, else the other synthetic speakers'."""
    if args.cross_audio:
        for path in args.cross_audio:
            if not Path(path).is_file():
                raise FileNotFoundError(f"--cross-audio {path}: no such file")
        return [Path(p) for p in args.cross_audio]
    return [data / f"synth{i:02d}" / "audio.wav" for i in (1, 2) if (data / f"synth{i:02d}" / "audio.wav").is_file()]


def ablation_part(args: MethodBenchArgs, data: Path, console) -> dict:
    """Table 4: the full model and its three ablations, self-driven and cross-driven."""
    from aenerf_ns.evaluation.evaluate import evaluate_cross_driven, evaluate_heldout

    cross = _cross_audio(args, data)
    rows: dict[str, dict] = {}
    for name, model in ABLATIONS.items():
        config = _config(data / "synth00", args, **model)
        trained = _train(config, args.ablation_steps, f"ablation: {name}")
        folder = args.output / "ablation" / name.replace("w/o ", "without_")
        scored = evaluate_heldout(
            trained.pipeline,
            folder,
            max_frames=args.ablation_frames,
            consecutive=True,
            syncnet_weights=args.syncnet_weights,
        )
        features = config.pipeline.datamanager.dataparser.audio
        scored["cross_driven"] = {
            f"{k + 1}: {path.parent.name if path.name == 'audio.wav' else path.stem}": evaluate_cross_driven(
                trained.pipeline,
                path,
                features,
                folder / f"cross_{k + 1}",
                max_frames=args.cross_frames,
                syncnet_weights=args.syncnet_weights,
            )
            for k, path in enumerate(cross)
        }
        rows[name] = dict(scored, ms_per_step=trained.ms_per_step)
    title = f"Ablation (Table 4): {args.ablation_steps} steps each, {args.ablation_frames} held-out frames"
    columns = ("model", "PSNR", "SSIM", "LMD", "sync", "LSE-C", "LSE-D", "ms/step")
    print_table(
        console,
        title,
        columns,
        [
            (
                name,
                number_cell(m["psnr"], ".2f"),
                number_cell(m["ssim"]),
                number_cell(m["lmd"], ".2f"),
                number_cell(m["av_sync"]),
                number_cell(m["lse_c"], ".2f"),
                number_cell(m["lse_d"], ".2f"),
                number_cell(m["ms_per_step"], ".0f"),
            )
            for name, m in rows.items()
        ],
    )
    truth = next(iter(rows.values()))
    lse = (number_cell(truth.get(f"lse_{k}_ground_truth"), ".2f") for k in "cd")
    console.print(
        f"ground truth: sync {number_cell(truth.get('av_sync_ground_truth'))}, LSE-C {next(lse)}, LSE-D {next(lse)}"
    )
    if cross:
        labels = list(next(iter(rows.values()))["cross_driven"])
        columns = ("model", *(f"{label} {m}" for label in labels for m in ("sync", "LSE-C")))
        cells = [
            (name, *(number_cell(m["cross_driven"][label][k], ".3f") for label in labels for k in ("av_sync", "lse_c")))
            for name, m in rows.items()
        ]
        print_table(console, "Cross-driven: each model driven by another speaker's speech (sync only)", columns, cells)
    else:
        console.print("cross-driven rows skipped: no other speaker's speech (give --cross-audio)")
    return rows


PARTS: dict[str, Callable[[MethodBenchArgs, Path, object], dict]] = {
    "audio": audio_part,
    "fewshot": fewshot_part,
    "fields": fields_part,
    "ssp": ssp_part,
    "ablation": ablation_part,
}
"""The comparisons, in the order they run and appear in results.json."""

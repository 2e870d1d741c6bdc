"""`aenerf-method-bench`: the AE-NeRF claims, measured on synthetic identities on any machine.

Prints three results (and writes them to `results.json` in the output folder):

1. Audio: the full model against the "without AAA and without audio" variant, trained with the same
   steps on the same identity and scored on held-out frames that speak their own, unseen audio. Prints
   both lower-face errors (MSE) and their ratio, and the correlation of rendered with true mouth opening.
2. Few-shot: a base model pretrained on several identities is fine-tuned on a new identity's short clip;
   a model of the same settings trains on that clip from scratch. Both score held-out PSNR every
   `eval_every` steps; printed are the steps each needs to reach the scratch model's final PSNR.
3. Fields: the tri-plane, hash-grid and positional-encoding fields train the full model on the same clip;
   held-out PSNR is recorded against training seconds, and printed is the PSNR each reaches within the
   same wall-clock budget (quality per minute).
4. SSP-NeRF: ssp-nerf against its two ablations (uniform ray sampling; no torso deformation) and
   against aenerf, all with the same steps on the same identity, scored on held-out frames: torso-area
   and mouth-area errors (the two regions SSP-NeRF's modules target), lower-face and full-image PSNR.
5. Ablation (the paper's Table 4): the full model against w/o AAA (audio-blind pooling of the reference
   features), w/o AAFG (one audio field renders the whole image) and w/o Warper, the same steps on the
   same identity, scored on consecutive held-out frames with their own unseen audio: PSNR, SSIM, LMD, the
   weight-free sync score and LSE-C / LSE-D (when SyncNet's weights are on disk). Each run is then
   driven by other speakers' speech (the paper's cross-driven Testsets B and C): sync measures only.
6. Speed: training milliseconds per iteration of every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

Part = Literal["audio", "fewshot", "fields", "ssp", "ablation"]


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
    position_encoding: Literal["triplane", "hashgrid", "positional"] = "triplane"
    """Field option the runs use (the preset's is triplane)."""
    eval_frames: int = 25
    """Held-out frames scored in the audio comparison."""
    field_steps: int = 800
    """Steps of each run in the field comparison (tri-plane, hash grid, positional)."""
    ssp_steps: int = 1500
    """Training steps of each run in the SSP-NeRF comparison."""
    ablation_steps: int = 3000
    """Training steps of each run in the ablation comparison (Table 4)."""
    ablation_frames: int = 100
    """Consecutive held-out frames each ablation run is scored on (the sync measures need seconds of speech)."""
    cross_audio: tuple[Path, ...] = ()
    """Speech that drives each ablation run in the cross-driven rows (default: the speech of synth01 and
    synth02, other speakers than the trained identity)."""
    cross_frames: int = 125
    """Frames rendered per cross-driven row."""
    syncnet_weights: Path | None = None
    """SyncNet's weights file for LSE-C / LSE-D (default: the documented location; skipped when absent)."""
    skip: tuple[Part, ...] = ()
    """Parts to skip: 'audio', 'fewshot', 'fields', 'ssp', 'ablation'."""


def _config(
    data: Path,
    args: MethodBenchArgs,
    method: Literal["aenerf", "ssp-nerf"] = "aenerf",
    train_fraction: float = 0.5,
    sampler: dict | None = None,
    **model,
):
    """The CPU preset of `method` on `data` with the chosen field option, then the `model` and `sampler` settings."""
    from aenerf_ns.bench.bench_methods import our_method_config

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


def steps_to_reach(curve: list[tuple[int, float, float]], target: float) -> int | None:
    """First evaluated step whose held-out PSNR is at least `target`."""
    for step, value, _ in curve:
        if value >= target:
            return step
    return None


def psnr_within(curve: list[tuple[int, float, float]], seconds: float) -> float:
    """Best held-out PSNR measured within `seconds` of training time."""
    return max(value for _, value, spent in curve if spent <= seconds + 1e-9)


def print_table(console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table of right-aligned columns."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


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


def _number(value, spec: str = ".3f") -> str:
    """A table cell: the number, or "-" for a skipped measure (a "skipped: ..." string) or a missing one."""
    if isinstance(value, dict):
        value = value.get("correlation")
    return format(value, spec) if isinstance(value, (int, float)) and value == value else "-"


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
                _number(m["psnr"], ".2f"),
                _number(m["ssim"]),
                _number(m["lmd"], ".2f"),
                _number(m["av_sync"]),
                _number(m["lse_c"], ".2f"),
                _number(m["lse_d"], ".2f"),
                _number(m["ms_per_step"], ".0f"),
            )
            for name, m in rows.items()
        ],
    )
    truth = next(iter(rows.values()))
    lse = (_number(truth.get(f"lse_{k}_ground_truth"), ".2f") for k in "cd")
    console.print(
        f"ground truth: sync {_number(truth.get('av_sync_ground_truth'))}, LSE-C {next(lse)}, LSE-D {next(lse)}"
    )
    if cross:
        labels = list(next(iter(rows.values()))["cross_driven"])
        columns = ("model", *(f"{label} {m}" for label in labels for m in ("sync", "LSE-C")))
        cells = [
            (name, *(_number(m["cross_driven"][label][k], ".3f") for label in labels for k in ("av_sync", "lse_c")))
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


def main(args: MethodBenchArgs) -> dict:
    from rich.console import Console

    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    console = Console()
    data = args.output / "data"
    if not all((data / f"synth{i:02d}" / "transforms.json").is_file() for i in range(args.base_identities + 1)):
        write_synthetic_sample(
            data, identities=args.base_identities + 1, seconds=args.seconds, resolution=args.resolution
        )
    results: dict = {"settings": {k: str(v) for k, v in vars(args).items()}}
    for name, part in PARTS.items():
        if name not in args.skip:
            results[name] = part(args, data, console)
    atomic_write_bytes(args.output / "results.json", json.dumps(results, indent=2).encode())
    console.print(f"results: {args.output / 'results.json'}")
    return results


def entrypoint() -> None:
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(MethodBenchArgs)
    run_cli("aenerf-method-bench", lambda: main(args), args.output)


if __name__ == "__main__":
    entrypoint()

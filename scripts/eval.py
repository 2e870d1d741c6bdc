"""`aenerf-eval`: quality and lip-sync figures of a trained talking head, as JSON plus pictures.

    aenerf-eval --load-config outputs/.../config.yml                 # held-out frames, their own audio
    aenerf-eval --load-config outputs/.../config.yml --audio new.wav # cross-driven: lip sync only

Every metric appears in `metrics.json`, either as a number or as "skipped: <reason>" (LPIPS needs AlexNet
weights on disk; LSE-C / LSE-D need SyncNet's weights; image metrics and LMD need ground truth).
The job is `aenerf_ns.evaluation.evaluate_run`.
"""

from __future__ import annotations

import tyro

from aenerf_ns.evaluation.evaluate_run import EvalArgs, evaluate_run

__all__ = ["EvalArgs", "main", "entrypoint"]


def main(args: EvalArgs) -> dict:
    """Evaluate the run with the parsed settings (`evaluate_run.evaluate_run`)."""
    return evaluate_run(args)


def entrypoint() -> None:
    from aenerf_ns.audio.audio_io import AudioError
    from aenerf_ns.inference.checkpoints import CheckpointError
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(EvalArgs)
    run_cli("aenerf-eval", lambda: main(args), args.load_config.parent, (AudioError, CheckpointError), False)


if __name__ == "__main__":
    entrypoint()

"""`aenerf-sample`: the whole job on the bundled synthetic sample, on any machine.

Writes the synthetic sample, trains `aenerf-tiny` on the first half of the clip, evaluates the held-out
second half with its own (unseen) audio (metrics, image strip, mouth-opening plot), and finally renders
the trained head speaking new synthetic speech as an mp4 with the audio track
(`aenerf_ns.engine.sample_job`).
"""

from __future__ import annotations

import tyro

from aenerf_ns.engine.sample_job import SampleArgs, run_sample_job

__all__ = ["SampleArgs", "main", "entrypoint"]


def _tiny_config():
    """aenerf-tiny's TrainerConfig (imported when the job needs it, inside its warnings log)."""
    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

    return aenerf_tiny_config()


def main(args: SampleArgs) -> dict:
    """Run the sample job with the parsed settings on aenerf-tiny (`sample_job.run_sample_job`)."""
    return run_sample_job(args, _tiny_config)


def entrypoint() -> None:
    main(tyro.cli(SampleArgs))


if __name__ == "__main__":
    entrypoint()

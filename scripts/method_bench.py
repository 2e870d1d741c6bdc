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

The comparisons are `aenerf_ns.bench.method_comparisons`; the settings and the run `method_bench_suite`.
"""

from __future__ import annotations

import tyro

from aenerf_ns.bench.method_bench_suite import MethodBenchArgs, run_method_bench

__all__ = ["MethodBenchArgs", "main", "entrypoint"]


def main(args: MethodBenchArgs) -> dict:
    """Run the comparisons with the parsed settings (`method_bench_suite.run_method_bench`)."""
    return run_method_bench(args)


def entrypoint() -> None:
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(MethodBenchArgs)
    run_cli("aenerf-method-bench", lambda: main(args), args.output)


if __name__ == "__main__":
    entrypoint()

"""Loading trained pipelines from a run's config.yml, with current torch."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import torch


@contextlib.contextmanager
def _trusted_torch_load():
    """nerfstudio checkpoints hold numpy scalars, which torch >= 2.6 refuses under weights_only=True.

    A run's own checkpoints are written by this machine's trainer, so they are loaded as full pickles.
    """
    original = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def load_trained_pipeline(config_path: Path, test_mode: Literal["test", "val", "inference"] = "test"):
    """Return (config, pipeline, checkpoint_path, step) for a finished or running training run."""
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"config {config_path} does not exist (pass the config.yml of a training run)")
    with _trusted_torch_load():
        return eval_setup(config_path, test_mode=test_mode)

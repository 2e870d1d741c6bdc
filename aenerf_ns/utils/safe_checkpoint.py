"""Reading checkpoints and weights files without running code from them.

A `.ckpt` or `.model` file is a pickle, and unpickling in full can call any function the file names: a shared
base model or SyncNet weights file could then run code on the machine that loads it. Every file this package
reads goes through `load_checkpoint`, i.e. torch's restricted unpickler (`weights_only=True`) which builds
tensors, containers and plain numbers only. The one addition is what numpy scalars need: nerfstudio's
exponential-decay scheduler computes learning rates with numpy, so checkpoints written before our trainer saved
plain numbers hold `numpy.float64` values in the optimizer and scheduler states. A file that needs anything else
is refused with `CheckpointRefusedError`, naming the file and the global it asked for.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

NUMPY_SCALAR_TYPES = (np.float64, np.float32, np.int64, np.int32, np.bool_)
"""The numpy scalar types a checkpoint may hold (as plain values; no arrays, no object dtype)."""


class CheckpointRefusedError(RuntimeError):
    """A checkpoint or weights file asks the unpickler for something beyond tensors, containers and numbers."""


def numpy_scalar_globals() -> list:
    """What torch's restricted unpickler needs to rebuild numpy scalars: the `scalar` constructor, `numpy.dtype`
    and the dtype classes of `NUMPY_SCALAR_TYPES` (numpy 1 and 2 name the constructor's module differently)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return [scalar, np.dtype, *(type(np.dtype(t)) for t in NUMPY_SCALAR_TYPES)]


def allow_numpy_scalars() -> None:
    """Let every `torch.load(..., weights_only=True)` in this process read numpy scalars (and nothing more).

    Called when nerfstudio imports the plugin, so that its own tools (`ns-render`, `ns-eval`, `ns-viewer`,
    `ns-export`) read checkpoints saved before the trainer wrote plain numbers."""
    torch.serialization.add_safe_globals(numpy_scalar_globals())


_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load` of `path` that builds tensors, containers and numbers only (numpy scalars included).

    Raises CheckpointRefusedError naming the file and the offending global when the file asks for anything else
    (a pickled class instance, a function call); other read errors (a missing or damaged file) propagate as
    torch raises them.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" not in message:
            raise
        found = _UNSUPPORTED.search(message)
        if found is None:  # not a request for code: a damaged file, or not a torch checkpoint at all
            reason = message.split("WeightsUnpickler error:")[-1].strip().split("\n\n")[0]
            raise pickle.UnpicklingError(f"{path} is not a readable torch checkpoint: {reason}") from exc
        raise CheckpointRefusedError(
            f"refusing to load {path}: it asks the unpickler for the global {found.group(1)}, and loading it could "
            "run code from the file. Only tensors, containers and plain or numpy numbers are read (save a "
            "state_dict(), not a pickled object)."
        ) from exc


def plain_numbers(value: Any) -> Any:
    """`value` with every numpy scalar inside dicts, lists and tuples replaced by the equal Python number."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((key, plain_numbers(item)) for key, item in value.items())
    if isinstance(value, list):
        return [plain_numbers(item) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(plain_numbers(item) for item in value)
    return value

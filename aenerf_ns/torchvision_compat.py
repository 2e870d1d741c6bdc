"""Lets `import torchvision` succeed on a CPU-only torch build.

PyPI's Linux torchvision wheels are compiled against the CUDA build of torch. Next to the CPU build of
torch their compiled operators (nms, roi_align, ...) cannot load, and torchvision >= 0.2x then fails at
import because it registers a fake kernel for `torchvision::nms` unconditionally. nerfstudio imports
torchvision for image utilities, so nothing would start.

`install()` adds an import hook (run at interpreter start-up by the `aenerf_ns_torchvision_compat.pth`
file this package installs; it imports nothing heavy). When torchvision is first imported, the hook tries
to load torchvision's compiled extension; only if that fails does it declare the two operator schemas
torchvision registers unconditionally. The pure-Python parts of torchvision then work, and the compiled
operators raise torch's usual "no kernel" error if anything calls them. With a working torchvision
(CUDA torch, or a source build) the hook changes nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARY = None


def declare_missing_operators() -> bool:
    """Load torchvision's compiled ops, or declare their schemas if they cannot load. True if declared."""
    global _LIBRARY
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for lib in Path(folder).glob("_C*.so"):
            try:
                torch.ops.load_library(str(lib))
                return False
            except OSError:
                pass
    if _LIBRARY is None and not hasattr(torch.ops.torchvision, "nms"):
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _LIBRARY.define(schema)
        return True
    return False


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            uninstall()
            try:
                declare_missing_operators()
            except Exception as exc:  # the import itself goes on and reports its own error, if any
                import warnings

                warnings.warn(f"aenerf_ns torchvision compatibility hook failed: {exc!r}", stacklevel=2)
        return None


_HOOK = _TorchvisionHook()


def install() -> None:
    """Activate the hook (idempotent); does nothing if torchvision is already imported."""
    if "torchvision" not in sys.modules and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)

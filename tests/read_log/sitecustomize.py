"""Loaded, instead of ../offline/sitecustomize.py, by processes that a test wants to watch reading images: it keeps
the offline guard and appends every image that a dataset reads (`PIL.Image.open` called from nerfstudio's
`get_numpy_image` or from our `load_label_map`) to `$AENERF_READ_LOG/rank<RANK>.txt`, one path per line.

`RANK` is set by the data-parallel launcher in each process it starts; images read before it is set (the parent
process) are logged under `rank-`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

_offline = importlib.util.spec_from_file_location(
    "offline_guard", Path(__file__).resolve().parent.parent / "offline" / "sitecustomize.py"
)
_offline.loader.exec_module(importlib.util.module_from_spec(_offline))

DATASET_READERS = {"get_numpy_image", "load_label_map"}
"""Functions whose image reads are training (or evaluation) data, as opposed to references or plates."""


def _install() -> None:
    folder = os.environ.get("AENERF_READ_LOG")
    if not folder:
        return
    import PIL.Image

    open_image = PIL.Image.open

    def logged_open(fp, *args, **kwargs):
        if sys._getframe(1).f_code.co_name in DATASET_READERS:
            with open(Path(folder) / f"rank{os.environ.get('RANK', '-')}.txt", "a") as log:
                log.write(f"{fp}\n")
        return open_image(fp, *args, **kwargs)

    PIL.Image.open = logged_open


_install()

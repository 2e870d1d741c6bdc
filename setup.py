"""Ships `aenerf_ns_torchvision_compat.pth` into site-packages, for regular and editable installs alike.

The start-up hook lets torchvision import next to the CPU-only torch build (see
aenerf_ns/torchvision_compat.py). Everything else about the package is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HOOK = "aenerf_ns_torchvision_compat.pth"
HERE = Path(__file__).resolve().parent


class BuildPyWithHook(build_py):
    """Regular wheels: files at the build root land in site-packages."""

    def run(self):
        super().run()
        shutil.copy(HERE / HOOK, Path(self.build_lib) / HOOK)


class EditableWheelWithHook(editable_wheel):
    """Editable wheels: put the hook next to setuptools' own __editable__ .pth file."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copy(HERE / HOOK, Path(unpacked_wheel) / HOOK)
        return result


setup(cmdclass={"build_py": BuildPyWithHook, "editable_wheel": EditableWheelWithHook})

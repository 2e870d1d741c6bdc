import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from aenerf_ns.models.method_contract import METHOD_CONFIGS_GROUP, talking_head_methods

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
METHODS = talking_head_methods()


def test_every_registered_method_is_discovered_with_its_tiny_preset():
    """pyproject's method entry points are exactly the registry's methods and their -tiny presets, and nerfstudio
    discovers each under its name."""
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    declared = ENTRY_POINTS[METHOD_CONFIGS_GROUP]
    assert {"aenerf", "ssp-nerf", "aenerf-gs"} <= {m.name for m in METHODS}
    assert set(declared) == {preset for m in METHODS for preset in (m.name, m.tiny)}
    methods, descriptions = discover_methods()
    for name, target in declared.items():
        assert methods[name].method_name == name, target
        assert descriptions[name], name
        assert target.startswith("aenerf_ns.method_configs."), target
    for m in METHODS:
        assert methods[m.name].pipeline.model._target is m.model_class is methods[m.tiny].pipeline.model._target
    assert "talking-head" in discover_dataparsers()[0]


def test_ns_train_help_lists_every_method():
    out = subprocess.run([str(VENV_BIN / "ns-train"), "-h"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for m in METHODS:
        assert m.name in out.stdout and m.tiny in out.stdout, m.name


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_ns_train_help_describes_each_tiny_preset(method):
    out = subprocess.run(
        [str(VENV_BIN / "ns-train"), method.tiny, "--help"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "talking-head" in out.stdout  # the dataparser
    assert "parsing-loss-mult" in out.stdout and "audio-code-dim" in out.stdout  # every talking-head model's
    if method.name == "ssp-nerf":
        assert "use-torso-deformation" in out.stdout and "semantic-aware" in out.stdout


def test_torchvision_imports_in_a_fresh_interpreter():
    code = "import torchvision.utils, nerfstudio.pipelines.base_pipeline; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_package_folders_install_under_aenerf_ns():
    import aenerf_ns.dataparsers.talking_head_spec as dp
    import aenerf_ns.method_configs.aenerf_methods as mc
    import aenerf_ns.scripts.synth_data as sd

    root = Path(__file__).resolve().parents[1]
    assert Path(dp.__file__).parent == root / "dataparsers"
    assert Path(mc.__file__).parent == root / "method_configs"
    assert Path(sd.__file__).parent == root / "scripts"

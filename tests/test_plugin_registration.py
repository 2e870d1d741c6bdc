import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def test_methods_and_dataparser_are_discovered():
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    methods, descriptions = discover_methods()
    assert {"aenerf", "aenerf-tiny", "ssp-nerf", "ssp-nerf-tiny"} <= set(methods)
    assert methods["aenerf-tiny"].method_name == "aenerf-tiny"
    assert methods["ssp-nerf-tiny"].method_name == "ssp-nerf-tiny"
    assert "talking-head" in discover_dataparsers()[0]


def test_ns_train_help_lists_and_describes_methods():
    out = subprocess.run([str(VENV_BIN / "ns-train"), "-h"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "aenerf-tiny" in out.stdout
    out = subprocess.run(
        [str(VENV_BIN / "ns-train"), "aenerf-tiny", "--help"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "talking-head" in out.stdout
    assert "parsing-loss-mult" in out.stdout
    out = subprocess.run(
        [str(VENV_BIN / "ns-train"), "ssp-nerf-tiny", "--help"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
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

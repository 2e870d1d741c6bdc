"""The package's shape as a checked contract: layering (import-linter), subpackages, function size.

The layers are declared in pyproject.toml (`[tool.importlinter]`). import-linter reads the package from disk, and
three of our subpackages live outside `aenerf_ns/` in the repository (method_configs/, dataparsers/, scripts/ are
installed as `aenerf_ns.*`), so the check runs on a copy of the sources arranged as the installed package.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAX_FUNCTION_LINES = 80
"""Longest function body (lines, decorators excluded) allowed in the package."""


def _package_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, from pyproject's setuptools settings."""
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    dirs = {}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        if package in mapping:
            dirs[package] = ROOT / mapping[package]
        else:
            parent, _, leaf = package.rpartition(".")
            dirs[package] = (dirs[parent] / leaf) if parent else ROOT / leaf
    return dirs


def _installed_layout(dest: Path) -> Path:
    """Copy every package's .py files to where an installed copy would have them; returns the import root."""
    for package, folder in _package_dirs().items():
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in folder.glob("*.py"):
            shutil.copy(source, target / source.name)
    return dest


def _lint_imports(import_root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(import_root))
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=import_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _python_files() -> list[Path]:
    return sorted(p for folder in _package_dirs().values() for p in folder.glob("*.py"))


def test_every_package_is_declared():
    """A folder with an __init__.py that pyproject does not list would be missing from installs."""
    declared = {folder.resolve() for folder in _package_dirs().values()}
    for init in (ROOT / "aenerf_ns").rglob("__init__.py"):
        assert init.parent.resolve() in declared, f"{init.parent} is not listed in pyproject's packages"


def test_layers_contract_holds(tmp_path):
    run = _lint_imports(_installed_layout(tmp_path))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout


def test_layers_contract_catches_an_upward_import(tmp_path):
    """The check is live: a data-layer module importing the benchmark breaks the contract."""
    root = _installed_layout(tmp_path)
    (root / "aenerf_ns" / "data" / "upward.py").write_text("from aenerf_ns.bench import bench_run  # noqa\n")
    run = _lint_imports(root)
    assert run.returncode != 0
    assert "aenerf_ns.data.upward -> aenerf_ns.bench.bench_run" in run.stdout


def test_package_shape():
    """Few top-level modules, the concerns in subpackages, package __init__ files empty (nerfstudio's import trap)."""
    top = ROOT / "aenerf_ns"
    modules = [p for p in top.glob("*.py")]
    subpackages = [p for p in top.iterdir() if (p / "__init__.py").is_file()]
    assert len(modules) <= 8, modules
    assert len(subpackages) >= 6, subpackages
    for folder in _package_dirs().values():
        init = folder / "__init__.py"
        assert init.read_text().strip() == "", f"{init} must stay empty"


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_are_short(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: split {', '.join(long)}"


def _subpackages() -> list[str]:
    """Installed names of the package's subpackages (`aenerf_ns.audio`, ..., `aenerf_ns.scripts`)."""
    return sorted(p for p in _package_dirs() if p.count(".") == 1)


def _layer_packages() -> list[list[str]]:
    """pyproject's import-linter layers, top first, each a list of package names."""
    (contract,) = PYPROJECT["tool"]["importlinter"]["contracts"]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def _code_block(markdown: Path, heading: str) -> str:
    """The first fenced block after `heading` in `markdown`."""
    text = markdown.read_text()
    assert heading in text, f"{markdown.name} lost its '{heading}' section"
    after = text.split(heading, 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def _layout_entries(block: str) -> dict[str, str]:
    """Folder entries of a layout block (`  audio/   text...` plus deeper-indented continuation lines)."""
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        folder = re.match(r"^  (\w+)/(\s|$)", line)
        if folder:
            current = folder[1]
            entries[current] = line[folder.end() :]
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_every_subpackage_sits_in_a_layer():
    """A subpackage outside the layers would escape the import contract."""
    layered = {name for layer in _layer_packages() for name in layer}
    missing = sorted(set(_subpackages()) - layered)
    assert not missing, f"add {missing} to [tool.importlinter]'s layers in pyproject.toml"


def test_architecture_doc_lists_the_declared_layers():
    """docs/architecture.md's layer list is pyproject's, line for line, so the two cannot drift."""
    block = _code_block(ROOT / "docs" / "architecture.md", "## Layers")
    documented = [
        [name.strip() for name in re.split(r"\s{2,}", line.strip())[0].split("|")]
        for line in block.splitlines()
        if line.strip()
    ]
    assert documented == _layer_packages()


def test_architecture_doc_names_every_folder_and_module():
    """docs/architecture.md's package layout names every subfolder of aenerf_ns/ and every module in it."""
    entries = _layout_entries(_code_block(ROOT / "docs" / "architecture.md", "## Package layout"))
    for package, folder in _package_dirs().items():
        if not package.startswith("aenerf_ns.") or not folder.is_relative_to(ROOT / "aenerf_ns"):
            continue
        name = package.split(".")[1]
        assert name in entries, f"docs/architecture.md's package layout has no {name}/ entry"
        unnamed = [
            p.stem
            for p in sorted(folder.glob("*.py"))
            if p.stem != "__init__" and not re.search(rf"\b{p.stem}\b", entries[name])
        ]
        assert not unnamed, f"docs/architecture.md's {name}/ entry does not name {unnamed}"


def test_readme_layout_lists_every_subpackage():
    """README's Layout names every subpackage folder, the ones installed from the repository root included."""
    block = _code_block(ROOT / "README.md", "## Layout")
    named = set(_layout_entries(block)) | set(re.findall(r"^(\w+)/", block, flags=re.M))
    missing = [name for name in (p.split(".")[1] for p in _subpackages()) if name not in named]
    assert not missing, f"README's Layout has no line for {missing}"

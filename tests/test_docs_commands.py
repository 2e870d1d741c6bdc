"""Every command shown in README.md and docs/*.md parses with its real command-line parser.

Commands are read from fenced bash blocks (with `\\` continuations, `&&` chains and comments) and from inline code
in the prose that starts with a console script. Each one goes through the entry point its program name resolves to
(`ns-train`: nerfstudio's own, built on `AnnotatedBaseConfigUnion`; ours: `[project.scripts]`) with `tyro.cli`
replaced by a version that stops right after parsing, so placeholder paths only need to parse. Commands of other
programs (pip, mkdir, ...) are skipped with their reason. README's base-model and fine-tuning recipe, its
held-out evaluation command and its aenerf-render commands with generated camera paths are also run for real at a
tiny size.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from unittest import mock

import pytest
import tomllib
import tyro
import yaml
from media_files import write_speech_wav

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
WRAPPERS = [("/usr/bin/time", "-v"), ("time",)]
"""Prefixes that run another command; the wrapped command is the one checked."""

SKIPPED_PROGRAMS = {
    "python3": "creates the virtual environment",
    "python": "runs the test suite",
    "pip": "installs the package",
    "mkdir": "a shell command, run for real by the fine-tuning recipe test",
    "ln": "a shell command, run for real by the fine-tuning recipe test",
    "huggingface-cli": "downloads a model, which needs the internet",
    "bench.sh": "scripts/gpu/bench.sh: test_gpu_bench.py runs `run` for real (`wheels` needs the package registry)",
    "ns-export": "run for real by test_nerfstudio_tools.py where open3d imports (it needs the libusb-1.0 library)",
}
"""Programs in the docs that are not this project's command-line tools, and why they are not parsed."""

TINY_RUN = {
    "aenerf-synth-data": ["--seconds", "2", "--resolution", "32"],
    "ns-train": [
        "--max-num-iterations",
        "2",
        "--machine.device-type",
        "cpu",
        "--vis",
        "tensorboard",
        "--pipeline.datamanager.train-num-rays-per-batch",
        "64",
        "--pipeline.datamanager.eval-num-rays-per-batch",
        "64",
    ],
    "aenerf-eval": ["--max-frames", "2"],
    "aenerf-render": ["--downscale-factor", "4"],
}
TINY_RUN["aenerf-train"] = TINY_RUN["ns-train"]
"""Size knobs appended to documented commands when they are run for real."""


@dataclass(frozen=True)
class DocCommand:
    """One command shown in a markdown file."""

    file: str
    """Path of the markdown file, relative to the repository."""
    line: int
    """1-based line where the command starts."""
    argv: tuple[str, ...]
    """The command split into words, program name first (without a `.venv/bin/` prefix)."""
    block: int | None = None
    """Line of the fenced block holding the command; None for inline code in the prose."""

    @property
    def program(self) -> str:
        return self.argv[0]

    def where(self) -> str:
        return f"{self.file}:{self.line}: {shlex.join(self.argv)}"


NERFSTUDIO_TOOLS = ("ns-train", "ns-render", "ns-eval", "ns-viewer")
"""nerfstudio's programs the docs show (test_nerfstudio_tools.py runs README's ns-render, ns-eval, ns-viewer)."""


@cache
def cli_entry_points() -> dict[str, str]:
    """Program name -> "module:function" for nerfstudio's tools the docs use and every console script in
    pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    tools = {name: entry_points(group="console_scripts", name=name) for name in NERFSTUDIO_TOOLS}
    return {**{name: next(iter(found)).value for name, found in tools.items()}, **scripts}


def _normalize(words: list[str]) -> list[str]:
    """Strip wrapper commands (`/usr/bin/time -v`) and path prefixes (`.venv/bin/`) from a command's words."""
    for wrapper in WRAPPERS:
        if tuple(words[: len(wrapper)]) == wrapper:
            words = words[len(wrapper) :]
    if words:
        words = [Path(words[0]).name, *words[1:]]
    return words


def _split_chain(words: list[str]) -> Iterator[list[str]]:
    """The commands of an `a && b` chain."""
    current: list[str] = []
    for word in words:
        if word in ("&&", "||", ";"):
            if current:
                yield current
            current = []
        else:
            current.append(word)
    if current:
        yield current


def fenced_commands(text: str, file: str) -> Iterator[DocCommand]:
    """Commands in the shell-language fenced blocks of a markdown text."""
    fence_lang = None
    block_line = 0
    pending, pending_line = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence_lang = stripped[3:].strip().lower() if fence_lang is None else None
            block_line = number
            continue
        if fence_lang not in SHELL_FENCES:
            continue
        if not pending:
            pending_line = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        for words in _split_chain(shlex.split(pending, comments=True)):
            yield DocCommand(file, pending_line, tuple(_normalize(words)), block_line)
        pending = ""


def inline_commands(text: str, file: str) -> Iterator[DocCommand]:
    """Inline code spans in the prose (outside fenced blocks) that start with one of the command-line tools."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
            lines.append("")
        else:
            lines.append("" if in_fence else line)
    prose = "\n".join(lines)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        words = _normalize(shlex.split(match.group(1).replace("\n", " ")))
        if len(words) > 1 and words[0] in cli_entry_points():
            yield DocCommand(file, prose.count("\n", 0, match.start()) + 1, tuple(words))


def doc_commands() -> list[DocCommand]:
    """Every command in README.md and docs/*.md."""
    found = []
    for path in DOC_FILES:
        text, name = path.read_text(), str(path.relative_to(ROOT))
        found += [*fenced_commands(text, name), *inline_commands(text, name)]
    return found


def skip_reason(command: DocCommand) -> str | None:
    """Why a documented command is not parsed, or None when it is one of the tools'."""
    if command.program in SKIPPED_PROGRAMS:
        return SKIPPED_PROGRAMS[command.program]
    if any(word.startswith("--") and "<" in word for word in command.argv):
        return "an option template (`--group.<option> VALUE`), not a command"
    return None


class _Parsed(Exception):
    """Raised in place of running a tool once its arguments have parsed."""


@cache
def parse_error(argv: tuple[str, ...]) -> str | None:
    """None when `argv` parses with its program's real entry point; otherwise the parser's complaint."""
    target = cli_entry_points().get(argv[0])
    if target is None:
        return f"{argv[0]} is not ns-train or a console script of pyproject.toml"
    module_name, function = target.split(":")
    entrypoint = getattr(importlib.import_module(module_name), function)
    real_cli = tyro.cli

    def parse_only(*args, **kwargs):
        raise _Parsed(real_cli(*args, **kwargs))

    output = io.StringIO()
    try:
        with (
            mock.patch.object(tyro, "cli", parse_only),
            mock.patch.object(sys, "argv", list(argv)),
            contextlib.redirect_stderr(output),
            contextlib.redirect_stdout(output),
        ):
            entrypoint()
    except _Parsed:
        return None
    except SystemExit as exc:
        return f"exit status {exc.code}:\n{output.getvalue()[-3000:]}"
    return "the entry point returned without parsing its arguments"


COMMANDS = doc_commands()
PARSED = [c for c in COMMANDS if skip_reason(c) is None]


def _case(command: DocCommand):
    """A test case per documented command; the ones that are not the tools' are skipped with their reason."""
    reason = skip_reason(command)
    marks = [pytest.mark.skip(reason=f"{command.where()}: {reason}")] if reason else []
    return pytest.param(command, id=f"{command.file}:{command.line}", marks=marks)


@pytest.mark.parametrize("command", [_case(c) for c in COMMANDS])
def test_documented_command_parses(command: DocCommand):
    error = parse_error(command.argv)
    assert error is None, f"{command.where()}\ndoes not parse: {error}"


def test_every_documented_program_is_known():
    """A command whose program is neither a tool nor explicitly skipped would go unchecked."""
    unknown = [c.where() for c in COMMANDS if c.program not in cli_entry_points() and skip_reason(c) is None]
    assert not unknown, unknown
    assert {c.program for c in PARSED} >= {"ns-train", "aenerf-synth-data", "aenerf-render", "aenerf-eval"}
    assert {c.program for c in PARSED} >= {"aenerf-sample", "aenerf-process", "aenerf-bench", "aenerf-method-bench"}


def test_extraction_handles_continuations_chains_and_comments():
    text = "\n".join(
        [
            "Train with `ns-train aenerf-tiny --data d\n--vis viewer` or read on.",
            "```bash",
            "python3 -m venv .venv && .venv/bin/aenerf-sample --output o   # the whole job",
            ".venv/bin/ns-train aenerf-tiny --data d \\",
            "    --max-num-iterations 3        # a comment",
            "```",
            "```",
            "ns-train not-a-shell-block",
            "```",
        ]
    )
    fenced = list(fenced_commands(text, "x.md"))
    assert [(c.line, c.argv) for c in fenced] == [
        (4, ("python3", "-m", "venv", ".venv")),
        (4, ("aenerf-sample", "--output", "o")),
        (5, ("ns-train", "aenerf-tiny", "--data", "d", "--max-num-iterations", "3")),
    ]
    inline = list(inline_commands(text, "x.md"))
    assert [(c.line, c.argv) for c in inline] == [(1, ("ns-train", "aenerf-tiny", "--data", "d", "--vis", "viewer"))]


def test_a_broken_command_is_reported():
    """The dataparser-subcommand form that nerfstudio 1.1.5 rejects is caught, with its file and line."""
    text = "Options:\n\n```bash\nns-train aenerf-tiny --data D talking-head --train-fraction 0.8\n```\n"
    (command,) = fenced_commands(text, "broken.md")
    error = parse_error(command.argv)
    assert error is not None and "talking-head" in error
    assert command.where().startswith("broken.md:4: ns-train aenerf-tiny")
    assert parse_error(("aenerf-render", "--audio", "a.wav", "--no-such-option", "1")) is not None
    assert parse_error(("ns-train", "aenerf-tiny", "--pipeline.datamanager.dataparser.train-fraction", "0.8")) is None


def _recipe() -> list[DocCommand]:
    """README's base-model-then-fine-tune block, command by command."""
    readme = [c for c in COMMANDS if c.file == "README.md" and c.block is not None]
    (finetune,) = [c for c in readme if "--pipeline.model.load-base" in c.argv]
    return [c for c in readme if c.block == finetune.block]


def _run_for_real(command: DocCommand, cwd: Path, paths: dict[str, Path] | None = None) -> subprocess.CompletedProcess:
    """Run a documented command in `cwd` with the tiny-size knobs appended and its placeholder paths resolved.

    `<timestamp>` is matched against the runs in `cwd`; `paths` maps other placeholders (`outputs/.../config.yml`).
    """
    argv = [str((paths or {}).get(word, word)) for word in command.argv]
    for i, word in enumerate(argv):
        if "<timestamp>" in word:
            (match,) = sorted(cwd.glob(word.replace("<timestamp>", "*")))
            argv[i] = str(match.relative_to(cwd))
    if argv[0] in cli_entry_points():
        argv[0] = str(Path(sys.executable).parent / argv[0])
    argv += TINY_RUN.get(command.program, [])
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def _check_ran(command: DocCommand, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{command.where()}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_readme_finetuning_recipe_runs(tmp_path):
    """Synthetic people, a base folder of links, base training, fine-tuning from the base checkpoint, evaluation."""
    recipe = _recipe()
    assert [c.program for c in recipe] == ["aenerf-synth-data", "mkdir", "ln", "ns-train", "ns-train"]
    for command in recipe:
        _check_ran(command, _run_for_real(command, tmp_path))
    base = sorted((tmp_path / "runs" / "base" / "aenerf-tiny").glob("*/nerfstudio_models/step-*.ckpt"))
    tuned_runs = sorted((tmp_path / "runs" / "synth00" / "aenerf-tiny").glob("*"))
    assert base and len(tuned_runs) == 1
    run = tuned_runs[0]
    assert sorted(run.glob("nerfstudio_models/step-*.ckpt"))
    config = yaml.load((run / "config.yml").read_text(), Loader=yaml.Loader)
    assert config.pipeline.model.load_base.parts[:3] == ("runs", "base", "aenerf-tiny")

    # README's held-out evaluation command on the fine-tuned run: warnings go to the run's aenerf.log
    evaluate = next(c for c in COMMANDS if c.file == "README.md" and c.argv[:2] == ("aenerf-eval", "--load-config"))
    result = _run_for_real(evaluate, tmp_path, {"outputs/.../config.yml": run / "config.yml"})
    _check_ran(evaluate, result)
    assert (run / "eval" / "metrics.json").is_file()
    assert "Warning" not in result.stdout + result.stderr and "Warning" in (run / "aenerf.log").read_text()

    # README's data-parallel command for CPU processes, on the same base folder (its GPU ones only parse here)
    readme = [c for c in COMMANDS if c.file == "README.md"]
    (parallel,) = [c for c in readme if c.program == "aenerf-train" and "cpu" in c.argv]
    result = _run_for_real(parallel, tmp_path)
    _check_ran(parallel, result)
    digests = re.findall(r"rank (\d): parameter digest (\w+)", result.stdout)
    assert sorted(rank for rank, _ in digests) == ["0", "1"] and len({d for _, d in digests}) == 1, digests


@pytest.mark.slow
def test_readme_render_path_commands_run(tiny_run, tmp_path):
    """README's aenerf-render commands with ns-render's generated paths (interpolate, spiral) render for real."""
    from aenerf_ns.inference.video_io import probe_media

    write_speech_wav(tmp_path / "speech.wav", 1.0, seed=3)
    commands = [
        c for c in COMMANDS if c.file == "README.md" and c.program == "aenerf-render" and "--pose-source" in c.argv
    ]
    sources = [c.argv[c.argv.index("--pose-source") + 1] for c in commands]
    assert sorted(sources) == ["interpolate", "spiral"], sources
    for command in commands:
        _check_ran(command, _run_for_real(command, tmp_path, {"outputs/.../config.yml": tiny_run}))
        output = tmp_path / command.argv[command.argv.index("--output-path") + 1]
        info = probe_media(output)
        assert (info.num_frames, info.audio_codec) == (25, "aac"), command.where()
        panels = 2 if "--rendered-output-names" in command.argv else 1  # README's names two outputs
        assert (info.width, info.height) == (12 * panels, 12), command.where()  # the 48 px sample run, downscaled 4x


def test_syncnet_reference_check_runs_on_a_pre_cropped_clip(tmp_path):
    """docs/evaluation.md's real-weights check, run as shown in a folder holding an `example.avi` (a 25 fps clip of
    stand-in face crops with speech) and a `syncnet_v2.model` of random weights: it scores the frames as they are."""
    import json

    import torch
    from media_files import face_crop_clip

    from aenerf_ns.evaluation.syncnet_network import SyncNet

    (command,) = [c for c in COMMANDS if c.file == "docs/evaluation.md" and "--pre-cropped" in c.argv]
    assert {"example.avi", "syncnet_v2.model"} <= set(command.argv)
    face_crop_clip(tmp_path / "example.avi", seconds=1.2)
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), tmp_path / "syncnet_v2.model")
    result = _run_for_real(command, tmp_path)
    _check_ran(command, result)
    report = json.loads((tmp_path / "example_sync_check.json").read_text())
    assert report["frames"] == 30 and report["lse_d"] > 0 and report["lse_c"] >= 0
    last = result.stdout.strip().splitlines()[-1]
    assert f"LSE-C {report['lse_c']:.3f}" in last and f"LSE-D {report['lse_d']:.3f}" in last, result.stdout[-1000:]

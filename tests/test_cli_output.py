"""The command-line tools' output routing: warnings and noisy loggers to `<output>/aenerf.log`, stage headers."""

from __future__ import annotations

import logging
import warnings

import pytest
from rich.console import Console

from aenerf_ns.utils.cli_output import LOG_NAME, stage_header, warnings_to_log


def test_warnings_go_to_the_log_and_everything_is_restored(tmp_path, capsys):
    show_before, filters_before = warnings.showwarning, list(warnings.filters)
    with warnings_to_log(tmp_path / "out") as log:
        warnings.warn("a library is deprecated", FutureWarning, stacklevel=1)
    assert log == tmp_path / "out" / LOG_NAME
    text = log.read_text()
    assert text.startswith("--- ") and "FutureWarning: a library is deprecated" in text
    assert "deprecated" not in capsys.readouterr().err
    assert warnings.showwarning is show_before and warnings.filters == filters_before


def test_no_warning_leaves_no_log(tmp_path):
    with warnings_to_log(tmp_path / "out") as log:
        pass
    assert not log.exists() and not (tmp_path / "out").exists()


def test_missing_folder_without_create_keeps_warnings_on_the_terminal(tmp_path, capsys):
    with warnings_to_log(tmp_path / "absent", create_folder=False):
        warnings.warn("shown on the terminal", UserWarning, stacklevel=1)
    assert "shown on the terminal" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()


def test_error_filters_still_raise(tmp_path):
    with warnings_to_log(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with pytest.raises(DeprecationWarning):
            warnings.warn("raised", DeprecationWarning, stacklevel=1)


def test_named_loggers_are_routed_and_restored(tmp_path):
    logger = logging.getLogger("aenerf_test_noisy")
    handlers, propagate = list(logger.handlers), logger.propagate
    with warnings_to_log(tmp_path, loggers=["aenerf_test_noisy"]) as log:
        logger.warning("weights %s not found", "x")
    assert "WARNING aenerf_test_noisy: weights x not found" in log.read_text()
    assert logger.handlers == handlers and logger.propagate == propagate


def test_stage_header():
    console = Console(record=True, width=80)
    stage_header(console, 2, 4, "training", "aenerf-tiny, 3 iterations")
    stage_header(console, 4, 4, "video")
    assert console.export_text().splitlines() == ["[2/4] training: aenerf-tiny, 3 iterations", "[4/4] video"]

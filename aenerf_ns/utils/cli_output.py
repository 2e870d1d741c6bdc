"""Terminal output of the command-line tools: one header line per stage, third-party warnings in a log file.

Libraries under the tools (torch, nerfstudio, transformers) emit many deprecation and performance warnings that
bury the tools' own progress. `warnings_to_log` sends them to `<output>/aenerf.log` for the duration of a run,
so the terminal shows the stages and the results while every warning stays available for inspection.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

LOG_NAME = "aenerf.log"
"""File name of the log that `warnings_to_log` writes inside the output folder."""


class _LazyLog:
    """A text log that is created, with a header line, only when something is first written to it."""

    def __init__(self, path: Path, create_folder: bool):
        self.path, self.create_folder = path, create_folder
        self.file: TextIO | None = None

    def write(self, text: str) -> None:
        if self.file is None:
            if self.create_folder:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.parent.is_dir():
                sys.stderr.write(text)  # nowhere to log: the terminal, as without the log
                return
            self.file = open(self.path, "a", encoding="utf8")
            self.file.write(f"--- {datetime.now().isoformat(timespec='seconds')} {' '.join(sys.argv)}\n")
        self.file.write(text)
        self.file.flush()

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextmanager
def warnings_to_log(folder: Path, loggers: Sequence[str] = (), create_folder: bool = True) -> Iterator[Path]:
    """Write Python warnings, and the records of the named `loggers`, to `folder/aenerf.log` instead of the terminal.

    The warning filters decide as before which warnings are shown (and which raise); only where a shown warning
    goes changes. The log is appended to, and created only when there is something to write; with
    `create_folder` False, a missing `folder` leaves output on the terminal. On exit the warning machinery and
    the loggers' handlers and propagation are restored. Yields the log file's path.
    """
    log = _LazyLog(Path(folder) / LOG_NAME, create_folder)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_writer(log)
        restore = [_route_logger(logging.getLogger(name), log) for name in loggers]
        try:
            yield log.path
        finally:
            for undo in restore:
                undo()
            log.close()


def _warning_writer(log: _LazyLog):
    """A `warnings.showwarning` replacement that appends the formatted warning to `log`."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        log.write(warnings.formatwarning(message, category, filename, lineno, line))

    return show


def _route_logger(logger: logging.Logger, log: _LazyLog):
    """Send `logger`'s records to `log` only; returns the function that restores the logger."""
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = (logger.handlers[:], logger.propagate)
    logger.handlers = [handler]
    logger.propagate = False

    def undo() -> None:
        logger.handlers, logger.propagate = saved[0], saved[1]

    return undo


def run_cli(
    program: str,
    main: Callable[[], object],
    log_folder: Path,
    errors: tuple[type[Exception], ...] = (),
    create_folder: bool = True,
):
    """Run a console script's `main()` with warnings in `log_folder/aenerf.log` (see `warnings_to_log`).

    An expected problem (an exception of `errors`: bad input, a missing file) ends the program with the single line
    `<program>: error: <message>` and exit status 1 instead of a traceback. Returns what `main` returns.
    """
    try:
        with warnings_to_log(log_folder, create_folder=create_folder):
            return main()
    except errors as exc:
        raise SystemExit(f"{program}: error: {exc}") from None


def stage_header(console: Console, index: int, total: int, name: str, detail: str = "") -> None:
    """Print one line announcing stage `index` of `total` (e.g. `[2/4] training: 1500 iterations`)."""
    text = f"[bold cyan][{index}/{total}] {name}[/bold cyan]"
    console.print(f"{text}: {detail}" if detail else text)

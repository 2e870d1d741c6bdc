"""What `aenerf-method-bench`'s tables show: a table of right-aligned cells, a number as a cell, and the two
readings of a held-out PSNR curve (steps to reach a PSNR, best PSNR within a time budget) that its rows hold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def steps_to_reach(curve: list[tuple[int, float, float]], target: float) -> int | None:
    """First evaluated step whose held-out PSNR is at least `target`."""
    for step, value, _ in curve:
        if value >= target:
            return step
    return None


def psnr_within(curve: list[tuple[int, float, float]], seconds: float) -> float:
    """Best held-out PSNR measured within `seconds` of training time."""
    return max(value for _, value, spent in curve if spent <= seconds + 1e-9)


def print_table(console, title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table of right-aligned columns."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def number_cell(value, spec: str = ".3f") -> str:
    """A table cell: the number, or "-" for a skipped measure (a "skipped: ..." string) or a missing one."""
    if isinstance(value, dict):
        value = value.get("correlation")
    return format(value, spec) if isinstance(value, (int, float)) and value == value else "-"

"""The live progress bar of one task, fed by its records as the client follows them."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from client import Client, TaskRecord


def follow_with_bar(api: Client, record: TaskRecord, console: Console) -> TaskRecord:
    """Show name, state, bar, percentage, message and elapsed time until the task ends; returns its last record."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        line = bar.add_task(_describe(record), total=1.0, message="")
        bar.update(line, completed=record.progress)
        for change in api.follow(record.id):
            bar.update(line, description=_describe(change), completed=change.progress, message=change.message or "")
            record = change
    return record


def _describe(record: TaskRecord) -> str:
    return f"{record.name} [bold]{record.state}[/]"

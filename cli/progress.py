"""The live progress bar of one task, fed by its server-sent events."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cli.client import Api, Record


def follow_with_bar(api: Api, record: Record, console: Console) -> Record:
    """Show name, state, bar, percentage, message and elapsed time until the task ends; returns its last record."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        line = bar.add_task(_describe(record), total=1.0, completed=record["progress"], message="")

        def show(change: Record) -> None:
            bar.update(
                line, description=_describe(change), completed=change["progress"], message=change["message"] or ""
            )

        return api.follow(record["id"], show)


def _describe(record: Record) -> str:
    return f"{record['name']} [bold]{record['state']}[/]"

"""`bgt`: start a task and watch its progress bar, list, show and cancel tasks; it talks to the REST API only.

Exit codes: 0 the task succeeded (or the command did what it said), 1 the task failed (or ended any other
unsuccessful way), 3 it was cancelled, 4 the API refused or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import islice
from typing import Annotated, Any, TypeVar, cast

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.progress import follow_with_bar
from client import ApiError, Client, TaskRecord, TaskState

SUCCEEDED, FAILED, CANCELLED, API_ERROR = 0, 1, 3, 4
T = TypeVar("T")

app = typer.Typer(help="Start, follow, list, show and cancel background tasks.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _api(ctx: typer.Context) -> Client:
    api: Client = ctx.obj
    return api


@app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="BGT_URL", help="Base URL of the API")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="BGT_API_KEY", help="Sent as X-API-Key (when the API has API_KEYS)")
    ] = None,
) -> None:
    ctx.obj = Client(url, api_key=api_key)
    ctx.call_on_close(ctx.obj.close)


def parse_params(pairs: list[str], raw_json: str | None) -> dict[str, Any]:
    """`key=value` pairs (a value is read as JSON when it is JSON, else as text) over an optional JSON object."""
    params: dict[str, Any] = {}
    if raw_json:
        try:
            loaded = json.loads(raw_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--json")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="PARAMS")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def exit_code(record: TaskRecord) -> int:
    state = record.state
    return SUCCEEDED if state == "succeeded" else CANCELLED if state == "cancelled" else FAILED


def _report_end(record: TaskRecord) -> int:
    state = record.state
    if state == "succeeded":
        out.print(f"[green]succeeded[/]: {escape(json.dumps(record.result))}")
    elif record.error:
        err.print(f"[red]{state}[/]: {escape(record.error)}")
    else:
        err.print(f"[yellow]{state}[/]")
    return exit_code(record)


def _follow(api: Client, record: TaskRecord) -> None:
    try:
        final = _guard(lambda: follow_with_bar(api, record, out))
    except KeyboardInterrupt:
        err.print(f"stopped watching; the task goes on: bgt follow {record.id}")
        raise typer.Exit(130) from None
    raise typer.Exit(_report_end(final))


@app.command()
def submit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The task's name (see `bgt tasks`)")],
    params: Annotated[list[str] | None, typer.Argument(help="Parameters as key=value")] = None,
    raw_json: Annotated[str | None, typer.Option("--json", help="Parameters as one JSON object")] = None,
    detach: Annotated[bool, typer.Option(help="Print the id and return instead of following")] = False,
) -> None:
    """Start a task, then follow it with a progress bar until it ends (exit 0 only if it succeeded)."""
    api = _api(ctx)
    record = _guard(lambda: api.submit(name, parse_params(params or [], raw_json)))
    if detach:
        out.print(record.id)
        return
    err.print(f"started {name} {record.id}")
    _follow(api, record)


@app.command()
def follow(ctx: typer.Context, task_id: str) -> None:
    """Follow a task with a progress bar until it ends (exit 0 only if it succeeded)."""
    api = _api(ctx)
    _follow(api, _guard(lambda: api.get(task_id)))


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only tasks in this state")] = None,
    name: Annotated[str | None, typer.Option(help="Only tasks with this name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """Recent tasks, newest first."""
    api = _api(ctx)
    wanted = cast(TaskState | None, state)  # as typed: the API answers a state that does not exist with 422
    items = _guard(lambda: list(islice(api.list(state=wanted, name=name, limit=limit), limit)))
    table = Table("name", "state", "progress", "created", "message")
    table.add_column("id", overflow="fold", min_width=36)  # whole, to copy into `bgt show`
    for item in items:
        table.add_row(
            item.id,
            item.name,
            item.state,
            f"{item.progress:.0%}",
            item.created_at.isoformat().replace("+00:00", "Z"),  # as the API sends it
            item.message or "",
        )
    out.print(table)


@app.command()
def show(ctx: typer.Context, task_id: str) -> None:
    """One task's whole record, as JSON."""
    api = _api(ctx)
    out.print_json(_guard(lambda: api.get(task_id)).model_dump_json())


@app.command()
def cancel(ctx: typer.Context, task_id: str) -> None:
    """Cancel a task: at once if queued, within seconds if running."""
    api = _api(ctx)
    record = _guard(lambda: api.cancel(task_id))
    stopping = f"asked to stop (still {record.state}); `bgt follow {task_id}`"
    out.print("cancelled" if record.state == "cancelled" else stopping)  # cancelled at once only if it was queued


@app.command()
def tasks(ctx: typer.Context) -> None:
    """The tasks this API can start, with their parameters."""
    api = _api(ctx)
    table = Table("name", "parameters", "description")
    for kind in _guard(api.catalog):
        schema = kind.params_schema
        required = set(schema.get("required", []))
        fields = [f"{key}{'' if key in required else '?'}" for key in schema.get("properties", {})]
        table.add_row(kind.name, " ".join(fields), kind.description.splitlines()[0] if kind.description else "")
    out.print(table)


def _guard(call: Callable[[], T]) -> T:
    """Run API calls; the API's refusal, or no API to talk to, ends the command with the reason and exit code 4."""
    try:
        return call()
    except ApiError as exc:
        reason = str(exc)
    except httpx.TransportError as exc:
        reason = f"cannot reach the API at {exc.request.url.copy_with(query=None)}: {exc}"
    err.print(f"[red]error[/]: {escape(reason)}")
    raise typer.Exit(API_ERROR) from None


def main() -> None:
    app()

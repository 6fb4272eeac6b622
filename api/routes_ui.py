"""The dashboard (one static page, no build step) and the catalog of tasks it builds its start form from."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from shared.catalog import TaskType
from shared.routing import Route
from shared.tasks import TaskRegistry


@cache
def _page() -> str:
    return (files("api") / "static" / "dashboard.html").read_text(encoding="utf-8")


def ui_router(registry: TaskRegistry, routes: dict[str, Route]) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    catalog = [
        TaskType(
            name=spec.name,
            description=(spec.fn.__doc__ or "").strip(),
            params_schema=spec.params_model.model_json_schema(),
            executor=routes[spec.name].executor,
            queue=routes[spec.name].queue if routes[spec.name].executor == "celery" else None,
        )
        for spec in registry
    ]

    @router.get("/", response_class=HTMLResponse, summary="The dashboard")
    async def dashboard() -> HTMLResponse:
        """Recent tasks with live state and progress, filters, a start form per task, cancel buttons."""
        return HTMLResponse(_page())

    @router.get("/catalog")
    async def task_catalog() -> list[TaskType]:
        """The registered tasks: the JSON Schema of each one's parameters, and where it runs."""
        return catalog

    return router

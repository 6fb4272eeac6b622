"""The dashboard (one static page, no build step) and the catalog of tasks it builds its start form from."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from shared.catalog import TaskType
from shared.tasks import TaskRegistry


@cache
def _page() -> str:
    return (files("api") / "static" / "dashboard.html").read_text(encoding="utf-8")


def ui_router(registry: TaskRegistry) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    catalog = [
        TaskType(
            name=spec.name,
            description=(spec.fn.__doc__ or "").strip(),
            params_schema=spec.params_model.model_json_schema(),
        )
        for spec in registry
    ]

    @router.get("/", response_class=HTMLResponse, summary="The dashboard")
    async def dashboard() -> HTMLResponse:
        """Recent tasks with live state and progress, filters, a start form per task, cancel buttons."""
        return HTMLResponse(_page())

    @router.get("/catalog")
    async def task_catalog() -> list[TaskType]:
        """The registered tasks and the JSON Schema of each one's parameters."""
        return catalog

    return router

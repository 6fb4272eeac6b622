"""The dashboard (static files, no build step) and the catalog of tasks it builds its start form from.

The page, its script and its stylesheet are separate files so that a strict Content-Security-Policy holds:
nothing inline to allow. The security headers go on these responses only, set by the routes themselves,
so the JSON API's hot routes pay nothing for them (a middleware would run on every request).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

from shared.catalog import TaskType
from shared.routing import Route
from shared.tasks import TaskRegistry

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate, so a new version of the page never meets an old script
}
ASSETS = {  # what /static/ serves, and as what
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@cache
def _static(name: str) -> bytes:
    return (files("api") / "static" / name).read_bytes()


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
        """Recent tasks with live state and progress, workers, queues, counts and charts, a start form."""
        return HTMLResponse(_static("dashboard.html"), headers=SECURITY_HEADERS)

    @router.get("/static/{asset}", include_in_schema=False)
    async def dashboard_asset(asset: str) -> Response:
        """The page's script and stylesheet; nothing else is served from the package."""
        media_type = ASSETS.get(asset)
        if media_type is None:
            raise HTTPException(404, "no such file")
        return Response(_static(asset), media_type=media_type, headers=SECURITY_HEADERS)

    @router.get("/catalog")
    async def task_catalog() -> list[TaskType]:
        """The registered tasks: the JSON Schema of each one's parameters, and where it runs."""
        return catalog

    return router

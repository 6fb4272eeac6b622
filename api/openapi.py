"""The OpenAPI document: FastAPI's, plus each task's parameter model as a component schema.

`POST /tasks/{name}` reads its body itself (`api/params.py`), so FastAPI does not see the models; they are
added here once, with the request bodies pointing at them, so `/docs` and generated clients get real types.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from shared.tasks import TaskRegistry

_REF = "#/components/schemas/{model}"


def install_openapi(app: FastAPI, registry: TaskRegistry) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        specs = list(registry)
        refs, definitions = models_json_schema([(spec.params_model, "validation") for spec in specs], ref_template=_REF)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(definitions.get("$defs", {}))
        for spec in specs:
            operation = schema["paths"].get(f"/tasks/{spec.name}", {}).get("post")
            if operation is not None:
                operation["requestBody"]["content"]["application/json"]["schema"] = refs[
                    (spec.params_model, "validation")
                ]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

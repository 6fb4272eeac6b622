"""A task's parameters from a request body: validated exactly as the runner will validate them.

The body is parsed by pydantic's own JSON parser (the one `model_validate_json` uses in the runner), so the
API accepts precisely what a task can run: no `NaN`, no `Infinity`, no number too large for a float, no
lone surrogate, no nesting deeper than the parser's limit. Anything else is a 422, never a 500 and never a
value silently changed (FastAPI's own `json.loads` would let all of these through).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json


def parse_params(model: type[BaseModel], body: bytes, *, required: bool) -> str:
    """The validated parameters as the JSON to store; RequestValidationError (a 422) if they are not valid."""
    if not body.strip():
        if required:
            raise _invalid("missing", ("body",), "Field required", None)
        return model().model_dump_json()
    try:
        value = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise _invalid("json_invalid", ("body",), f"JSON decode error: {exc}", None) from None
    if (where := _non_finite(value, ("body",))) is not None:
        raise _invalid("finite_number", where, "Input should be a finite number", None)
    try:
        params = model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    return params.model_dump_json()


def _non_finite(value: Any, where: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """Where a float that is not finite hides (pydantic reads 1e400 as inf), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(item, float | dict | list) and (found := _non_finite(item, (*where, key))) is not None:
            return found
    return None


def _invalid(kind: str, loc: tuple[str | int, ...], message: str, value: object) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": loc, "msg": message, "input": value}])

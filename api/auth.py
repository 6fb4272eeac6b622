"""Optional API keys (`API_KEYS`): each task belongs to the key that created it, and is invisible to others."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Required when API_KEYS is set")


def owner_of(key: str) -> str:
    """What the store keeps instead of the key itself: it never holds or returns a secret."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def get_owner(request: Request, key: Annotated[str | None, Depends(_api_key)]) -> str | None:
    """None when authentication is off; otherwise the caller's owner id, or 401."""
    return owner_from(request, key)


def owner_from(request: Request, key: str | None = None) -> str | None:
    """The same check, for the hottest routes, which read the header themselves: each dependency FastAPI
    resolves costs more than the Redis read they make (the benchmark's profile). They declare the scheme
    with `SECURED` so the OpenAPI document is the same."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return None
    if key is None:
        key = request.headers.get("x-api-key")
    if key is None or not any(hmac.compare_digest(key.encode(), allowed.encode()) for allowed in keys):
        raise HTTPException(
            401, "missing or invalid API key (X-API-Key header)", headers={"WWW-Authenticate": "ApiKey"}
        )
    return owner_of(key)


OwnerDep = Annotated[str | None, Depends(get_owner)]
SECURED: dict[str, object] = {"security": [{"APIKeyHeader": []}]}  # what OwnerDep adds to an operation


def check_metrics_token(request: Request, token: str | None) -> None:
    """With METRICS_TOKEN set, `/metrics` needs it as a bearer token (its counts cover every owner's tasks)."""
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(401, "missing or invalid bearer token for /metrics", headers={"WWW-Authenticate": "Bearer"})

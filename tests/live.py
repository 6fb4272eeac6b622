"""Helpers for tests that talk HTTP to a live API process."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def submit(
    base: str, name: str, params: dict[str, Any] | None = None, *, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    resp = httpx.post(f"{base}/tasks/{name}", json=params or {}, headers=headers, timeout=10)
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    assert resp.headers["location"] == f"/tasks/{body['id']}"
    return body


def get(base: str, task_id: str, *, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    resp = httpx.get(f"{base}/tasks/{task_id}", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_for(
    base: str,
    task_id: str,
    check: Any,
    *,
    timeout: float = 20,
    what: str = "",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    rec = get(base, task_id, headers=headers)
    while not check(rec):
        if time.monotonic() > deadline:
            raise AssertionError(f"task never reached {what or 'the expected state'}; last seen: {rec}")
        time.sleep(0.05)
        rec = get(base, task_id, headers=headers)
    return rec


def wait_finished(
    base: str, task_id: str, *, timeout: float = 30, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return wait_for(
        base, task_id, lambda r: r["state"] in TERMINAL, timeout=timeout, what="a terminal state", headers=headers
    )

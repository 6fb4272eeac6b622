"""With API keys, following is scoped like reading: another key's task is a 404 and never shows in a stream."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import ALICE, BOB
from tests.live import submit, wait_finished
from tests.sse import Event, Read, read_events

pytestmark = pytest.mark.slow


def test_another_keys_task_cannot_be_followed(secured_api: str) -> None:
    alices = submit(secured_api, "sleep", {"seconds": 1}, headers=ALICE)["id"]
    for path in (f"/tasks/{alices}?wait=5", f"/tasks/{alices}/events"):
        resp = httpx.get(f"{secured_api}{path}", headers=BOB, timeout=30)
        assert resp.status_code == 404, path
        assert resp.json() == {"detail": f"no task with id {alices}"}
    assert httpx.get(f"{secured_api}/events", timeout=30).status_code == 401
    own = read_events(f"{secured_api}/tasks/{alices}/events", auth=ALICE)
    assert own.ended
    assert own.events[-1].record["state"] == "succeeded"


def test_the_all_tasks_stream_carries_only_the_callers_tasks(secured_api: str) -> None:
    bobs: list[str] = []
    seen: list[Read] = []

    def bobs_ended(events: list[Event]) -> bool:
        return any(e.record["id"] in bobs and e.record["state"] == "succeeded" for e in events)

    reader = threading.Thread(
        target=lambda: seen.append(read_events(f"{secured_api}/events", until=bobs_ended, auth=BOB))
    )
    reader.start()
    time.sleep(0.5)  # the stream is open before the tasks start
    alices = [submit(secured_api, "noop", {"value": "alice"}, headers=ALICE)["id"] for _ in range(3)]
    for task_id in alices:
        wait_finished(secured_api, task_id, headers=ALICE)
    bobs.append(submit(secured_api, "noop", {"value": "bob"}, headers=BOB)["id"])
    reader.join(timeout=60)
    assert not reader.is_alive()
    ids = {e.record["id"] for e in seen[0].events}
    assert bobs[0] in ids
    assert not ids & set(alices)  # Alice's tasks changed first, yet Bob saw none of them

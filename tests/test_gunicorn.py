"""gunicorn with `api.gunicorn.UvicornWorker` stops as the README promises for uvicorn: what can finish within
the grace finishes, what cannot ends `lost` at once, and gunicorn never has to kill a worker.

The stock `uvicorn_worker.UvicornWorker` is stopped the same way to show what the class fixes: with no graceful
shutdown timeout, its uvicorn waits for the running task for ever, gunicorn SIGKILLs the worker at
--graceful-timeout, the app's shutdown never runs, and the task stays `running` with nobody left to sweep it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger as GunicornLogger

from api.gunicorn import UvicornWorker, shutdown_grace
from api.serving import H11_MAX_INCOMPLETE_EVENT_SIZE, LIMIT_CONCURRENCY, SHUTDOWN_SECONDS
from shared.connection import open_store
from shared.record import TaskRecord
from shared.runner import SHUTDOWN_LOST
from shared.settings import Settings
from tests.live import submit, wait_for
from tests.processes import Proc, start_gunicorn, start_redis

GRACEFUL = 10  # gunicorn's --graceful-timeout here: our worker gives tasks 10 - 7 = 3 s of it
STOCK_GRACEFUL = 4  # enough to show the stock worker is killed at the deadline, not before


def test_the_grace_leaves_the_apps_shutdown_time_before_gunicorns_kill() -> None:
    assert SHUTDOWN_SECONDS == 7
    assert shutdown_grace(30, 60) == 23  # the README's command
    assert shutdown_grace(30, 30) == 8  # after a reload the kill comes when the last heartbeat is --timeout old
    assert shutdown_grace(30, 0) == 23  # --timeout 0: no heartbeat check
    assert shutdown_grace(GRACEFUL, 30) == 3
    assert shutdown_grace(5, 60) == 0  # too short for the app's shutdown: cancel at once (and a warning)


@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    """The worker points uvicorn's loggers at gunicorn's handlers: put them back for the other tests."""
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate)
        for lg in map(logging.getLogger, ("uvicorn.error", "uvicorn.access"))
    ]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers, lg.propagate = handlers, propagate
        lg.setLevel(level)


@pytest.mark.usefixtures("uvicorn_loggers")
def test_the_worker_gives_uvicorn_the_grace_and_the_projects_limits() -> None:
    cfg = GunicornConfig()
    cfg.set("graceful_timeout", 30)
    cfg.set("timeout", 60)
    cfg.set("keepalive", 3)
    worker = UvicornWorker(0, os.getpid(), [], None, cfg.timeout / 2, cfg, GunicornLogger(cfg))
    try:
        config = worker.config  # what uvicorn's Server will run with
        assert config.timeout_graceful_shutdown == 23
        assert config.limit_concurrency == LIMIT_CONCURRENCY
        assert config.h11_max_incomplete_event_size == H11_MAX_INCOMPLETE_EVENT_SIZE
        assert config.timeout_keep_alive == 3  # gunicorn's --keep-alive, as the stock worker maps it
        assert (config.loop, config.http) == ("auto", "auto")
    finally:
        worker.tmp.close()


def url(proc: Proc) -> str:
    return str(proc.extra["url"])


def stored(redis_url: str, *task_ids: str) -> list[TaskRecord]:
    """The records straight from Redis: after gunicorn has exited there is no API left to ask."""

    async def read() -> list[TaskRecord]:
        store = open_store(Settings(redis_url=redis_url))
        try:
            found = [await store.get(task_id) for task_id in task_ids]
        finally:
            await store.redis.aclose()
        assert all(found), found
        return [record for record in found if record]

    return asyncio.run(read())


def stop(gunicorn: Proc, deadline: float) -> float:
    """SIGTERM gunicorn, as Docker or systemd would; the seconds it took to exit, which it does with 0."""
    started = time.monotonic()
    gunicorn.popen.send_signal(signal.SIGTERM)
    assert gunicorn.popen.wait(deadline) == 0, gunicorn.log()
    return time.monotonic() - started


@pytest.fixture
def redis_url() -> Iterator[str]:
    redis = start_redis()
    yield str(redis.extra["url"])
    redis.stop()


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "EXECUTOR": "background", "PROGRESS_INTERVAL": "0.2"}


@pytest.mark.slow
def test_a_stopping_gunicorn_finishes_what_it_can_and_marks_the_rest_lost(redis_url: str, env: dict[str, str]) -> None:
    gunicorn = start_gunicorn(env, "api.gunicorn.UvicornWorker", workers=2, graceful_timeout=GRACEFUL)
    try:
        long_id = submit(url(gunicorn), "sleep", {"seconds": 600})["id"]
        wait_for(url(gunicorn), long_id, lambda r: r["state"] == "running", what="running")
        short_id = submit(url(gunicorn), "sleep", {"seconds": 0.5})["id"]  # accepted just before the stop
        took = stop(gunicorn, GRACEFUL + 10)
    finally:
        gunicorn.stop()
    short, long = stored(redis_url, short_id, long_id)
    assert short.state == "succeeded"  # finished within the grace
    assert (long.state, long.error) == ("lost", SHUTDOWN_LOST)  # said at once, not left to a sweeper
    # Both workers ran the app's shutdown and exited by themselves (3 s of grace, then about half a second),
    # well before gunicorn's kill at GRACEFUL.
    assert gunicorn.log().count("Application shutdown complete.") == 2, gunicorn.log()
    assert took < GRACEFUL - 2, took


@pytest.mark.slow
def test_the_stock_worker_is_killed_with_its_task_left_running(redis_url: str, env: dict[str, str]) -> None:
    gunicorn = start_gunicorn(env, "uvicorn_worker.UvicornWorker", workers=2, graceful_timeout=STOCK_GRACEFUL)
    try:
        long_id = submit(url(gunicorn), "sleep", {"seconds": 600})["id"]
        wait_for(url(gunicorn), long_id, lambda r: r["state"] == "running", what="running")
        took = stop(gunicorn, STOCK_GRACEFUL + 10)
    finally:
        gunicorn.stop()
    [long] = stored(redis_url, long_id)
    assert (long.state, long.error) == ("running", None)  # and stays so: no process is left to sweep it
    assert gunicorn.log().count("Application shutdown complete.") == 1  # the idle worker's only
    assert took >= STOCK_GRACEFUL - 0.5, took  # gunicorn waited for its deadline, then killed the other

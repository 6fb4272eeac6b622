"""The exact Redis command count per task: a separate, untimed pass with MONITOR running.

`INFO commandstats` counts every executed command, including each command a Lua script runs (plus the
EVALSHA that ran the script), and it cannot tell who sent what. MONITOR shows each command with its
client (or `lua` for a script's own calls), so this pass splits a system's commands per task into
top-level commands (what clients send) and calls inside scripts, and by purpose: the status layer
(our `bgt:*` keys, the blog-style Redis app's `blog:*`), Celery's result backend (`celery-task-meta-*`),
Celery's task events (publishes to its `celeryev` exchange, when events are on), the transport (broker) and
the reads of `GET /tasks/{id}` (polls, counted per GET). MONITOR slows Redis down, so nothing is timed here.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import httpx
import redis

from bench import redisstats
from bench.systems import Running, SystemSpec

CATEGORIES = ("status", "results", "events", "transport")
# Commands a client sends when it opens a connection: not per task (a pool that grows mid-pass sends them),
# and left out of the commandstats deltas too (`redisstats`), so neither side counts them.
_HANDSHAKE = {"HELLO", "SELECT", "CLIENT", "AUTH"}
_NOT_PER_TASK = {"health", "connection"}


def classify(spec: SystemSpec, role: str, name: str, key: str) -> str:
    if name == "PING":
        return "health"
    if name in _HANDSHAKE:
        return "connection"
    if spec.poll_read and role == "api" and name == spec.poll_read[0] and key.startswith(spec.poll_read[1]):
        return "poll"
    if key.startswith(("bgt:", "blog:")) or name == "XREAD":  # XREAD [COUNT n] [BLOCK ms] STREAMS bgt:events ...
        return "status"
    if spec.ours and name in ("TIME", "INFO"):  # our processes' clock sync and memory guard: the status layer's
        return "status"
    if key.startswith("celery-task-meta-"):
        return "results"
    if "celeryev" in key:  # a PUBLISH to the events exchange's channel, e.g. `/0.celeryev/task.succeeded`
        return "events"
    return "transport"


async def _drive(system: Running, tasks: int, concurrency: int) -> int:
    """Submit `tasks` no-ops, then read each until it ended; returns how many GETs that took."""
    gets = 0
    async with httpx.AsyncClient(base_url=system.url, timeout=60) as client:
        todo = iter(range(tasks))
        ids: list[str] = []

        async def submit() -> None:
            for i in todo:
                resp = await client.post("/tasks/noop", json={"value": i})
                resp.raise_for_status()
                ids.append(resp.json()[system.spec.id_field])

        await asyncio.gather(*(submit() for _ in range(concurrency)))
        for task_id in ids:
            while True:
                gets += 1
                resp = await client.get(f"/tasks/{task_id}")
                if system.spec.parse(resp.json()).done:
                    break
                await asyncio.sleep(0.02)
    return gets


async def count(system: Running, tasks: int, stats_client: redis.Redis, redis_port: int) -> dict[str, Any]:
    assert system.redis_url
    monitor = redisstats.Monitor(system.redis_url)
    before = redisstats.commandstats(stats_client)
    monitor.start()
    gets = await _drive(system, tasks, concurrency=8)
    await asyncio.sleep(0.3)  # let the last finish writes land
    log = monitor.stop()
    after = redisstats.commandstats(stats_client)
    pids = redisstats.ports_by_pid(redis_port)
    api_pids = {system.api.pid}
    worker_pids = {proc.pid for proc in system.worker.tree()} if system.worker else set()

    def role(source: str) -> str:
        if source == "lua":
            return "lua"
        pid = pids.get(source)
        if pid in api_pids:
            return "api"
        if pid in worker_pids:
            return "worker"
        if pid == os.getpid():
            return "bench"
        return "other" if pid is not None else "unknown"

    by_role_cmd: Counter[tuple[str, str, str]] = Counter()
    open_tx: dict[str, tuple[str, str | None]] = {}  # client -> (its role, purpose of its transaction so far)
    for source, name, key in log.entries:
        who = role(source)
        if name == "MULTI":  # a transaction belongs to what its commands are for: counted when that is known
            open_tx[source] = (who, None)
            continue
        purpose = classify(system.spec, who, name, key)
        if source in open_tx:
            tx_role, tx_purpose = open_tx[source]
            if tx_purpose is None:
                tx_purpose = "transport" if name == "EXEC" else purpose
                by_role_cmd[(tx_role, tx_purpose, "MULTI")] += 1
                open_tx[source] = (tx_role, tx_purpose)
            if name in ("EXEC", "DISCARD"):
                purpose = tx_purpose
                del open_tx[source]
        by_role_cmd[(who, purpose, name)] += 1
    for tx_role, tx_purpose in open_tx.values():  # a MULTI whose commands the monitor did not see
        by_role_cmd[(tx_role, tx_purpose or "transport", "MULTI")] += 1

    def total(*, where: set[str], what: set[str]) -> int:
        return sum(n for (who, cat, _), n in by_role_cmd.items() if who in where and cat in what)

    mine = {"api", "worker", "lua"}
    top = {"api", "worker"}
    per_task: dict[str, float] = {}
    for cat in CATEGORIES:
        per_task[f"{cat}_top_level"] = total(where=top, what={cat}) / tasks
        per_task[f"{cat}_in_scripts"] = total(where={"lua"}, what={cat}) / tasks
        per_task[cat] = per_task[f"{cat}_top_level"] + per_task[f"{cat}_in_scripts"]
    per_task["top_level"] = total(where=top, what=set(CATEGORIES)) / tasks
    per_task["in_scripts"] = total(where={"lua"}, what=set(CATEGORIES)) / tasks
    per_task["total"] = per_task["top_level"] + per_task["in_scripts"]
    stats = redisstats.delta(before, after)
    stats.pop("ping", None)
    return {
        "tasks": tasks,
        "gets": gets,
        "per_task": per_task,
        "reads_per_get": total(where={"api"}, what={"poll"}) / gets if gets else None,
        "commandstats_per_task": sum(stats.values()) / tasks,
        "monitor_lines_per_task": sum(n for (who, cat, _), n in by_role_cmd.items() if cat not in _NOT_PER_TASK)
        / tasks,
        "not_this_system": {
            "other_processes": total(where={"other"}, what=set(CATEGORIES) | {"poll"}),
            "unattributed": total(where={"unknown"}, what=set(CATEGORIES) | {"poll"}),
            "health_pings": total(where=mine | {"other", "unknown"}, what={"health"}),
            "connection_handshakes": total(where=mine | {"other", "unknown"}, what={"connection"}),
        },
        "by_command_per_task": {
            f"{who} {cat} {name}": n / tasks
            for (who, cat, name), n in sorted(by_role_cmd.items(), key=lambda item: -item[1])
            if who in mine and cat not in _NOT_PER_TASK
        },
    }

"""Tasks the benchmark adds to the service (`TASK_MODULES=shared.builtin_tasks,bench.tasks`).

`cpu_async` is the built-in `cpu` written the way one must not: CPU-bound work in an `async def`, which
holds the event loop of whatever process runs it. It shows what that does to the API under `background`.
"""

from __future__ import annotations

from bench.baselines.work import digest
from shared.builtin_tasks import CpuParams
from shared.tasks import task


@task("cpu_async")
async def cpu_async(params: CpuParams) -> dict[str, str | int]:
    return {"digest": digest(params.rounds), "rounds": params.rounds}

"""gunicorn's worker for this app: uvicorn's, with a graceful shutdown that ends before gunicorn kills it.

    gunicorn api.main:app -k api.gunicorn.UvicornWorker --workers 4 --graceful-timeout 30 --timeout 60

The stock `uvicorn_worker.UvicornWorker` (and the deprecated `uvicorn.workers` one, the same code) leaves
uvicorn's graceful-shutdown timeout unset, so a stopping worker waits for its running in-process tasks for
ever. gunicorn SIGKILLs it at --graceful-timeout, before the app's shutdown has marked those tasks `lost`:
they stay `running` until another process's sweeper sees their lease expire (never, if none runs).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker as StockWorker

from api.serving import H11_MAX_INCOMPLETE_EVENT_SIZE, LIMIT_CONCURRENCY, SHUTDOWN_SECONDS


def shutdown_grace(graceful_timeout: float, timeout: float) -> int:
    """Seconds a stopping worker gives running requests and in-process tasks, so that the app's own shutdown
    (SHUTDOWN_SECONDS) still ends before gunicorn's kill. That kill comes `graceful_timeout` after a stop
    (TERM); after a reload (HUP) or a --max-requests restart, once the worker's last heartbeat is `timeout`
    old (0: never). A worker beats every timeout/2 and not while it shuts down, so half of it is all that is sure.
    """
    deadline = min(graceful_timeout, timeout / 2) if timeout > 0 else graceful_timeout
    return max(0, math.floor(deadline - SHUTDOWN_SECONDS))


class UvicornWorker(StockWorker):  # type: ignore[misc]  # uvicorn-worker and gunicorn ship no type hints
    """uvicorn_worker's worker with this project's limits (api/serving.py) and a bounded graceful shutdown.

    The keep-alive timeout stays gunicorn's --keep-alive (2 s by default), as the stock worker maps it.
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **StockWorker.CONFIG_KWARGS,
        "limit_concurrency": LIMIT_CONCURRENCY,
        "h11_max_incomplete_event_size": H11_MAX_INCOMPLETE_EVENT_SIZE,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # builds self.config (uvicorn's) from gunicorn's self.cfg
        grace = shutdown_grace(self.cfg.graceful_timeout, self.cfg.timeout)
        self.config.timeout_graceful_shutdown = grace
        if grace == 0:
            self.log.warning(
                "--graceful-timeout %s s (or half of --timeout %s s) leaves less than the app's %s s of shutdown: "
                "running in-process tasks are cancelled at once, and may be killed before they are marked lost",
                self.cfg.graceful_timeout,
                self.cfg.timeout,
                SHUTDOWN_SECONDS,
            )

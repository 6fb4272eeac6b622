"""How the API's server is run: uvicorn's limits and the shutdown timing, in one place for every way of serving it.

`scripts/dev` and `docker-compose.yml` spell the flags out (a shell script and a YAML list cannot import them;
the tests check both carry these values), `api.gunicorn.UvicornWorker` passes them to uvicorn's config, and
`api.main` drains for `DRAIN_SECONDS`. Importing this module must stay cheap: gunicorn's master imports it.
"""

from __future__ import annotations

from typing import Final

# After uvicorn's graceful-shutdown timeout cancels unfinished in-process tasks, they still get this long to
# record that they were lost (retrying while Redis is away) before the Redis connection closes.
DRAIN_SECONDS: Final = 5.0
# The app's whole shutdown after that timeout: the drain, then closing the event hub, Redis and the executors.
# A process manager's kill must come at least this long after the timeout, or tasks stay `running`.
SHUTDOWN_SECONDS: Final = 7

# Past this many open connections, or running requests plus in-process tasks (each BackgroundTasks run holds
# its request's ASGI task), uvicorn answers every new request 503 at once instead of queueing it. Kept well
# under a 1024-file limit less the Redis pool (REDIS_MAX_CONNECTIONS, 200) so that the 503 can still be sent.
LIMIT_CONCURRENCY: Final = 500
# An idle keep-alive connection is closed this many seconds after its last response (uvicorn's default, made
# explicit). uvicorn has no timeout before the first request or within a request head: a reverse proxy's job.
TIMEOUT_KEEP_ALIVE: Final = 5
# The most bytes of an incomplete request head buffered per connection (h11's default, made explicit). Only
# the h11 parser has this cap; httptools, which uvicorn[standard] uses by default, has none.
H11_MAX_INCOMPLETE_EVENT_SIZE: Final = 16_384

UVICORN_LIMITS: Final = {
    "limit_concurrency": LIMIT_CONCURRENCY,
    "timeout_keep_alive": TIMEOUT_KEEP_ALIVE,
    "h11_max_incomplete_event_size": H11_MAX_INCOMPLETE_EVENT_SIZE,
}


def uvicorn_flags() -> list[str]:
    """The limits as uvicorn's command-line flags, in the order scripts/dev and docker-compose.yml give them."""
    return [arg for name, value in UVICORN_LIMITS.items() for arg in ("--" + name.replace("_", "-"), str(value))]

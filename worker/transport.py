"""kombu's Redis transport, except that a full Redis (`OutOfMemoryError`) is survived, not fatal.

kombu counts Redis's refusal to write at `maxmemory` as a channel error, which stops a Celery worker for
good ("Unrecoverable error"), and again at every restart while Redis stays full. As a connection error,
the worker reconnects and goes on once memory frees. (The API stops accepting tasks before Redis is full, so
this is the fallback for what it could not foresee.)
"""

from __future__ import annotations

from kombu.transport.redis import Transport as RedisTransport
from redis.exceptions import OutOfMemoryError


class Transport(RedisTransport):
    connection_errors = (*RedisTransport.connection_errors, OutOfMemoryError)

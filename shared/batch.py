"""Automatic pipelining: the store's commands issued in the same turn of the event loop go out together.

Under load, many requests of one API process write or read the store at the same moment. Each command
sent alone pays redis-py's whole path (a pooled connection taken and given back, a timeout armed, the reply
parsed) for one round trip; sent together, as one pipeline, they share it. The commands and their number
are unchanged, so Redis sees exactly what it would have seen. A command alone in its turn is sent as it
would be without this (a pipeline of one would only cost more).

Scripts are called by their SHA (`EVALSHA`), and loaded on demand when Redis does not know them (after a
restart or a `SCRIPT FLUSH`), which is what redis-py's own `Script` does, minus the `SCRIPT EXISTS` its
pipelines send every time.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError


class Batcher:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()  # held, so a send in flight is never collected

    async def call(self, *command: Any) -> Any:
        """Send one command (with the others of this turn of the loop); its reply, or its error raised.

        The first caller of a turn sends the batch itself, once the others of that turn have joined it (one
        yield to the loop): no task is created per batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if self._scheduled:
            return await future
        self._scheduled = True
        try:
            await asyncio.sleep(0)
        finally:
            batch, self._pending, self._scheduled = self._pending, [], False
        send = asyncio.ensure_future(self._send(batch)) if len(batch) > 1 else None
        if send is None:
            await self._send(batch)
        else:
            self._sending.add(send)  # the others wait on it even if this caller is cancelled meanwhile
            send.add_done_callback(self._sending.discard)
        return await future

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await _one(self.redis, batch[0][0])]
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for command, _ in batch:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every command of the batch failed with it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # its caller gave up waiting (cancelled)
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


async def _one(redis: Any, command: tuple[Any, ...]) -> Any:
    try:
        return await redis.execute_command(*command)
    except Exception as exc:  # delivered to its caller, as in a pipeline
        return exc


def pack(args: list[Any]) -> bytes:
    """A script's arguments as one string, split again in Lua (`shared/scripts.py`): a command with one
    argument instead of a dozen costs redis-py far less to encode. No argument contains 0x1e: they are JSON
    (which escapes control characters), numbers, ids and names."""
    return b"\x1e".join(arg if isinstance(arg, bytes) else str(arg).encode() for arg in args)


@dataclass
class Script:
    """A Lua script called by SHA through the batcher, loaded when Redis does not know it."""

    source: str
    batcher: Batcher
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, *, keys: list[Any], args: list[Any]) -> Any:
        packed = pack(args)
        try:
            return await self.batcher.call("EVALSHA", self.sha, len(keys), *keys, packed)
        except NoScriptError:
            await self.batcher.redis.script_load(self.source)
            return await self.batcher.call("EVALSHA", self.sha, len(keys), *keys, packed)

    def queue(self, pipe: Any, *, keys: list[Any], args: list[Any]) -> None:
        """Add a call to a pipeline of the caller's (who handles `NoScriptError` with `load`)."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, pack(args))

    async def load(self) -> None:
        await self.batcher.redis.script_load(self.source)

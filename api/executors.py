"""The two ways to run a task, behind one small protocol; EXECUTOR picks one."""

from __future__ import annotations

from functools import cache, partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import anyio
from fastapi import BackgroundTasks

from shared.connection import redis_client
from shared.logs import task_logging
from shared.runner import Runner
from shared.settings import Settings
from shared.sweeper import Requeuer

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Producer
    from redis.asyncio import Redis


class Executor(Protocol):
    name: ClassVar[str]

    async def dispatch(self, task_id: str, name: str, params_json: str, background: BackgroundTasks) -> None:
        """Hand a task whose `queued` record is already stored to whatever will run it."""

    async def revoke(self, task_id: str) -> None:
        """Extra help for a cancellation; the store's flag is what every runner obeys."""

    async def aclose(self) -> None:
        """Release what the executor holds (called when the app shuts down)."""


class BackgroundExecutor:
    """FastAPI's BackgroundTasks: the runner starts in this process right after the 202 is sent."""

    name: ClassVar[str] = "background"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def dispatch(self, task_id: str, name: str, params_json: str, background: BackgroundTasks) -> None:
        background.add_task(self._run, task_id, name, params_json)

    async def _run(self, task_id: str, name: str, params_json: str) -> None:
        with task_logging(task_id):
            await self.runner.run(task_id, name, params_json)

    async def revoke(self, task_id: str) -> None:
        """Nothing to do: the runner in this process reads the cancel flag with its next heartbeat."""

    async def aclose(self) -> None:
        """Nothing held."""


class CeleryExecutor:
    """A Celery worker over Redis; the Celery task id is the record's id.

    Publishing goes through Celery's own `send_task`, so the message is exactly the one Celery would send
    (protocol 2 headers, routing, kombu's envelope and delivery tag), but the producer it is given keeps
    the final Redis commands kombu would run instead of running them, and the API sends those with its
    asyncio Redis client. So a POST never waits on the thread pool or a blocking socket (issue 3: that
    was what limited the POST rate). Brokers other than plain `redis://` use `send_task` in a thread.
    """

    name: ClassVar[str] = "celery"

    def __init__(self, app: Celery, broker: Redis | None = None) -> None:
        self.app = app
        self.broker = broker
        self._producer: Any = None  # a capturing kombu Producer, made on first use
        self._producer_lock = anyio.Lock()

    async def dispatch(self, task_id: str, name: str, params_json: str, background: BackgroundTasks) -> None:
        if self.broker is None:
            from worker.factory import send

            await send(self.app, task_id, name, params_json)
            return
        if self._producer is None:
            async with self._producer_lock:
                if self._producer is None:
                    self._producer = await anyio.to_thread.run_sync(self._make_producer)
        commands = self._producer.capture(partial(self.app.send_task, name, args=[params_json], task_id=task_id))
        if len(commands) == 1:
            command, args = commands[0]
            await getattr(self.broker, command)(*args)
            return
        async with self.broker.pipeline(transaction=False) as pipe:
            for command, args in commands:
                getattr(pipe, command)(*args)
            await pipe.execute()

    def _make_producer(self) -> Any:
        """Open kombu's channel (it connects and pings once) and declare the queues, as Celery would."""
        connection = self.app.connection_for_write()
        producer: Any = _capturing_producer_class()(connection.default_channel, auto_declare=False)
        for queue in self.app.amqp.queues.values():
            producer.maybe_declare(queue)
        producer._declared = frozenset(self.app.amqp.queues)
        return producer

    async def revoke(self, task_id: str) -> None:
        """Workers drop a revoked message that is still queued instead of running it."""
        await anyio.to_thread.run_sync(partial(self.app.control.revoke, task_id))

    async def aclose(self) -> None:
        if self.broker is not None:
            await self.broker.aclose()


@cache
def _capturing_producer_class() -> type[Producer]:
    from kombu import Producer

    class CapturingProducer(Producer):
        """Routes and encodes a message exactly as for publishing; keeps the Redis commands instead of sending.

        kombu's Redis channel hands a publish batch each final command (`add(name, *args)`); this
        producer is that batch, for one message at a time.
        """

        _commands: list[tuple[str, tuple[Any, ...]]] | None = None
        _declared: frozenset[str] = frozenset()  # queue names declared when the producer was made

        def add(self, command: str, *args: Any) -> None:
            assert self._commands is not None
            self._commands.append((command, args))

        def capture(self, send: Any) -> list[tuple[str, tuple[Any, ...]]]:
            self._commands = []
            try:
                send(producer=self)
                if not self._commands:
                    raise RuntimeError("kombu produced no Redis command for the message")
                return self._commands
            finally:
                self._commands = None

        def _publish(  # the signature of kombu.Producer._publish
            self,
            body: Any,
            priority: Any,
            content_type: Any,
            content_encoding: Any,
            headers: Any,
            properties: Any,
            routing_key: Any,
            mandatory: Any,
            immediate: Any,
            exchange: Any,
            declare: Any,
            timeout: Any = None,
            confirm_timeout: Any = None,
            retry: bool = False,
            retry_policy: Any = None,
        ) -> None:
            channel: Any = self.channel
            message = channel.prepare_message(body, priority, content_type, content_encoding, headers, properties)
            for entity in declare or ():
                if getattr(entity, "name", None) not in self._declared:  # kombu's cache still copies each time
                    self.maybe_declare(entity)
            channel.basic_publish(
                message,
                exchange=exchange,
                routing_key=routing_key,
                mandatory=mandatory,
                immediate=immediate,
                _publish_batch=self,
            )

    return CapturingProducer


def _can_capture(app: Celery) -> bool:
    """A plain `redis://` broker, and a kombu whose Redis channel hands publish batches their commands."""
    from kombu.transport import redis as kombu_redis

    options = app.conf.broker_transport_options or {}
    return (
        str(app.conf.broker_url).startswith("redis://")
        and not options.get("global_keyprefix")  # kombu's client would add it to every key
        and hasattr(kombu_redis.Channel, "create_publish_batch")  # kombu >= 5.7
    )


def make_executor(settings: Settings, runner: Runner) -> Executor:
    if settings.executor == "celery":
        from worker.factory import make_celery  # only a Celery deployment imports Celery

        app = make_celery(settings, runner.registry)
        broker = redis_client(str(settings.broker_url), settings) if _can_capture(app) else None
        return CeleryExecutor(app, broker)
    return BackgroundExecutor(runner)


def make_requeuer(settings: Settings, executor: Executor, runner: Runner) -> Requeuer | None:
    """How this process re-sends a Celery task whose worker died; None without a broker (dev mode)."""
    if not settings.broker_url:
        return None
    from worker.factory import make_celery, requeuer

    app = executor.app if isinstance(executor, CeleryExecutor) else make_celery(settings, runner.registry)
    return requeuer(app)

"""The two ways to run a task, behind one small protocol; each task's route picks one (see shared/routing.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache, partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import anyio
from fastapi import BackgroundTasks

from shared.connection import redis_client
from shared.logs import task_logging
from shared.routing import Route
from shared.runner import Runner
from shared.settings import Settings
from shared.store import Publish, StatusStore
from shared.sweeper import Requeuer

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Producer
    from redis.asyncio import Redis


@dataclass(frozen=True)
class Plan:
    """How the record of a new task is stored, decided by the executor before the store creates it."""

    lease: str = ""  # see StatusStore.create: 'q' run here, 'd' a message not yet confirmed sent, '' none
    publish: Publish | None = None  # the Celery message, stored and sent by the same script
    commands: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # the message as broker commands to send after


class Executor(Protocol):
    name: ClassVar[str]
    needs_broker: ClassVar[bool]  # whether readiness depends on a broker

    async def ready(self) -> bool:
        """Whether the broker answers (readiness)."""

    async def plan(self, task_id: str, name: str, params_json: str, owner: str) -> Plan:
        """What creating the task's record must include (a lease, or the message itself)."""

    async def dispatch(
        self, task_id: str, name: str, params_json: str, owner: str, plan: Plan, background: BackgroundTasks
    ) -> None:
        """Hand a task whose `queued` record is stored to whatever will run it (unless creating it did)."""

    async def revoke(self, task_id: str) -> None:
        """Extra help for a cancellation; the store's flag is what every runner obeys."""

    async def aclose(self) -> None:
        """Release what the executor holds (called when the app shuts down)."""


class BackgroundExecutor:
    """FastAPI's BackgroundTasks: the runner starts in this process right after the 202 is sent."""

    name: ClassVar[str] = "background"
    needs_broker: ClassVar[bool] = False
    _PLAN = Plan(lease="q")  # leased from the start: if this process dies before running it, it ends `lost`

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def ready(self) -> bool:
        return True

    async def plan(self, task_id: str, name: str, params_json: str, owner: str) -> Plan:
        return self._PLAN

    async def dispatch(
        self, task_id: str, name: str, params_json: str, owner: str, plan: Plan, background: BackgroundTasks
    ) -> None:
        background.add_task(self._run, task_id, name, params_json, owner)

    async def _run(self, task_id: str, name: str, params_json: str, owner: str) -> None:
        with task_logging(task_id):
            await self.runner.run(task_id, name, params_json, owner)

    async def revoke(self, task_id: str) -> None:
        """Nothing to do: the keeper of the process running it reads the stop flag with its next heartbeat."""

    async def aclose(self) -> None:
        """Nothing held."""


class CeleryExecutor:
    """A Celery worker; the Celery task id is the record's id.

    The message is built by Celery's own `send_task`, so it is exactly the one Celery would send (protocol 2
    headers, routing, kombu's envelope and delivery tag), through a producer that keeps the final Redis
    commands kombu would run instead of running them. When the broker is the store's own Redis, the store's
    create script runs that command itself: the record and the message exist together or not at all, in one
    round trip. With another Redis broker, the API sends the commands with its asyncio client; with other
    brokers (RabbitMQ), `send_task` runs in a thread. Either way the record is leased until the send is
    confirmed, so a message lost with a dying API is sent again by a sweeper.
    """

    name: ClassVar[str] = "celery"
    needs_broker: ClassVar[bool] = True

    def __init__(self, app: Celery, store: StatusStore, broker: Redis | None = None, *, inline: bool = False) -> None:
        self.app = app
        self.store = store
        self.broker = broker
        self.inline = inline and broker is None
        self._producer: Any = None  # a capturing kombu Producer, made on first use
        self._producer_lock = anyio.Lock()

    async def ready(self) -> bool:
        if self.inline:
            return bool(await self.store.ping())
        if self.broker is not None:
            return bool(await self.broker.ping())
        return bool(await anyio.to_thread.run_sync(self._broker_answers))

    def _broker_answers(self) -> bool:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=1)
        return True

    async def queue_depth(self, queue: str) -> int | None:
        """Messages waiting in a queue (the Redis list kombu keeps, or RabbitMQ's count); None if unknown."""
        try:
            if self.inline:
                return int(await self.store.redis.llen(queue))
            if self.broker is not None:
                return int(await self.broker.llen(queue))
            return await anyio.to_thread.run_sync(self._amqp_depth, queue)
        except Exception as exc:  # a broker that cannot tell is not an error of the page
            log.debug("depth of queue %s unknown: %s", queue, exc)
            return None

    def _amqp_depth(self, queue: str) -> int:
        with self.app.connection_for_read() as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare(queue, passive=True).message_count)

    async def plan(self, task_id: str, name: str, params_json: str, owner: str) -> Plan:
        if not (self.inline or self.broker is not None):
            return Plan(lease="d")
        if self._producer is None:
            async with self._producer_lock:
                if self._producer is None:
                    self._producer = await anyio.to_thread.run_sync(self._make_producer)
        send = partial(self.app.send_task, name, args=[params_json], kwargs=message_kwargs(owner), task_id=task_id)
        commands = tuple(self._producer.capture(send))
        if self.inline and len(commands) == 1:
            command, args = commands[0]
            return Plan(publish=Publish(command, args[0], tuple(args[1:])))
        return Plan(lease="d", commands=commands)

    async def dispatch(
        self, task_id: str, name: str, params_json: str, owner: str, plan: Plan, background: BackgroundTasks
    ) -> None:
        if plan.publish is not None:
            return  # sent by the script that stored the record
        if plan.commands and self.broker is not None:
            async with self.broker.pipeline(transaction=False) as pipe:
                for command, args in plan.commands:
                    getattr(pipe, command)(*args)
                await pipe.execute()
        else:
            from worker.factory import send

            await send(self.app, task_id, name, params_json, owner)
        await self.store.release(task_id)

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


def make_executors(settings: Settings, runner: Runner, routes: dict[str, Route]) -> dict[str, Executor]:
    """The executors the routes use, by name: in-process always (it costs nothing), Celery when a task runs there."""
    executors: dict[str, Executor] = {"background": BackgroundExecutor(runner)}
    if settings.executor == "celery" or any(route.executor == "celery" for route in routes.values()):
        from worker.factory import make_celery  # only a Celery deployment imports Celery

        app = make_celery(settings, runner.registry)
        capture = _can_capture(app)
        # The message goes inside the create script when the broker is the store's own Redis (one server, one db).
        inline = capture and not settings.redis_cluster and settings.broker_url == settings.redis_url
        broker = redis_client(str(settings.broker_url), settings) if capture and not inline else None
        executors["celery"] = CeleryExecutor(app, runner.store, broker, inline=inline)
    return executors


def make_requeuer(settings: Settings, executors: dict[str, Executor], runner: Runner) -> Requeuer | None:
    """How this process re-sends a Celery task whose worker died; None without a broker (dev mode)."""
    if not settings.broker_url:
        return None
    from worker.factory import make_celery, requeuer

    celery = executors.get("celery")
    app = celery.app if isinstance(celery, CeleryExecutor) else make_celery(settings, runner.registry)
    return requeuer(app)


def message_kwargs(owner: str, *, eager: bool = False) -> dict[str, Any]:
    """The Celery message's keyword arguments: the owner (for the record's indexes), and whether the worker
    must claim the task before running it (a re-sent message: its earlier run may have begun)."""
    return {"owner": owner, "eager": True} if eager else {"owner": owner}

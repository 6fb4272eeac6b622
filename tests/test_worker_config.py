"""Celery's delivery settings match what the service promises: JSON only, late acks, no lost messages."""

from __future__ import annotations

from shared.settings import Settings
from shared.tasks import TaskRegistry, registry
from worker.factory import broker_warnings, make_celery
from worker.outcome import TaskFailed


def test_celery_is_configured_for_at_least_once_delivery_of_json_only() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", task_time_limit=3600, lease_seconds=30)
    conf = make_celery(settings, TaskRegistry()).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_acks_on_failure_or_timeout is True  # a task that ends FAILURE is not delivered again
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_accept_content == ["json"]
    assert conf.task_ignore_result is True
    # A running task is kept by its lease, not its message: the message only covers delivery -> start, so
    # a worker killed in between has its message re-delivered within this (plus a restore interval).
    assert conf.broker_transport_options["visibility_timeout"] == settings.celery_visibility_timeout == 300
    assert conf.broker_transport_options["unacked_restore_throttle"] == 1


def test_every_registered_task_becomes_a_celery_task() -> None:
    registry.load(["shared.builtin_tasks"])
    app = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"), registry)
    assert {"noop", "sleep", "cpu", "fail"} <= set(app.tasks)


def test_a_rabbitmq_broker_with_tasks_longer_than_its_consumer_timeout_is_named_at_start() -> None:
    amqp = "amqp://guest:guest@127.0.0.1:5672/x"
    long = Settings(redis_url="redis://127.0.0.1:1/0", celery_broker_url=amqp, task_time_limit=7200)
    (warning,) = broker_warnings(long)
    assert "consumer_timeout = 7260000" in warning
    assert (
        broker_warnings(Settings(redis_url="redis://127.0.0.1:1/0", celery_broker_url=amqp, task_time_limit=1500)) == []
    )
    assert broker_warnings(Settings(redis_url="redis://127.0.0.1:1/0", task_time_limit=7200)) == []  # Redis: none


def test_task_events_are_a_setting_and_each_task_ends_as_its_record() -> None:
    registry.load(["shared.builtin_tasks"])
    quiet = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"), registry)
    assert quiet.conf.worker_send_task_events is False
    assert quiet.conf.task_send_sent_event is False  # the API's create script publishes the message itself
    loud = make_celery(Settings(redis_url="redis://127.0.0.1:1/0", celery_task_events=True), registry)
    assert loud.conf.worker_send_task_events is True
    task = loud.tasks["fail"]
    assert task.throws == (TaskFailed,)  # logged once at INFO, without the entry point's traceback
    assert task.Request == "worker.outcome:StoreRequest"
    assert getattr(task, "autoretry_for", ()) == ()  # Celery retries nothing: the runner does

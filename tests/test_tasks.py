"""The task interface: registration, parameter models, the context a task sees."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from shared.tasks import TaskCancelled, TaskContext, TaskRegistry, UnknownTask


class P(BaseModel):
    x: int


def test_the_parameter_model_comes_from_the_first_annotation() -> None:
    tasks = TaskRegistry()

    @tasks.task("named")
    async def anything(params: P, ctx: TaskContext) -> int:
        return params.x

    @tasks.task()
    def plain(params: P) -> int:
        return params.x

    named, bare = tasks.get("named"), tasks.get("plain")
    assert (named.params_model, named.is_async, named.takes_context) == (P, True, True)
    assert (bare.params_model, bare.is_async, bare.takes_context) == (P, False, False)
    assert [spec.name for spec in tasks] == ["named", "plain"]
    assert "plain" in tasks


def test_a_task_without_a_pydantic_model_is_refused() -> None:
    tasks = TaskRegistry()
    with pytest.raises(TypeError, match="pydantic model"):

        @tasks.task()
        def untyped(params: dict[str, int]) -> None: ...


def test_two_tasks_cannot_share_a_name() -> None:
    tasks = TaskRegistry()

    @tasks.task("x")
    def first(params: P) -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @tasks.task("x")
        def second(params: P) -> None: ...


def test_an_unknown_name_raises_unknown_task() -> None:
    with pytest.raises(UnknownTask):
        TaskRegistry().get("missing")


def test_progress_is_clamped_and_versioned() -> None:
    ctx = TaskContext("t")
    ctx.progress(1.7, "too far")
    assert (ctx.fraction, ctx.message, ctx.version) == (1.0, "too far", 1)
    ctx.progress(-1)
    assert (ctx.fraction, ctx.message, ctx.version) == (0.0, None, 2)


def test_cancellation_is_seen_by_the_task() -> None:
    ctx = TaskContext("t")
    ctx.raise_if_cancelled()
    assert not ctx.cancelled
    ctx.request_stop()
    assert ctx.cancelled
    with pytest.raises(TaskCancelled):
        ctx.raise_if_cancelled()


def test_the_builtin_tasks_are_registered_with_their_contract() -> None:
    from shared import builtin_tasks
    from shared.tasks import registry

    registry.load(["shared.builtin_tasks"])
    assert {"noop", "sleep", "cpu", "fail"} <= {spec.name for spec in registry}
    assert registry.get("cpu").params_model is builtin_tasks.CpuParams
    assert not registry.get("cpu").is_async  # CPU work belongs in a thread, not on the event loop
    assert registry.get("sleep").is_async

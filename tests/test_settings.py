"""Configuration: defaults that run with nothing installed, and one clear line when it cannot work."""

from __future__ import annotations

import pytest

from shared.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir("/")  # no stray .env file


def test_defaults_need_no_service() -> None:
    settings = load_settings()
    assert settings.executor == "background"
    assert settings.redis_url is None
    assert settings.result_ttl_seconds == 7 * 24 * 3600
    assert settings.task_modules == ["shared.builtin_tasks"]


def test_celery_without_redis_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR", "celery")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    message = str(exc.value.code)
    assert message == "configuration error: EXECUTOR=celery needs REDIS_URL (the in-memory store is one process only)"


def test_an_unknown_executor_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR", "threads")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert str(exc.value.code).startswith("configuration error: EXECUTOR: ")
    assert "\n" not in str(exc.value.code)


def test_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR", "celery")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/2")
    monkeypatch.setenv("TASK_MODULES", "shared.builtin_tasks, myapp.tasks")
    settings = load_settings()
    assert settings.broker_url == "redis://example:6379/2"
    assert settings.task_modules == ["shared.builtin_tasks", "myapp.tasks"]
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://other:6379/0")
    assert load_settings().broker_url == "redis://other:6379/0"


def test_a_heartbeat_slower_than_half_the_lease_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASE_SECONDS", "3")
    monkeypatch.setenv("HEARTBEAT_INTERVAL", "2")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "HEARTBEAT_INTERVAL must be at most half of LEASE_SECONDS" in str(exc.value.code)


def test_security_lists_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "key-one-secret, two")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-pw-secret@db:6379/0")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    settings = load_settings()
    assert settings.api_keys == ["key-one-secret", "two"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    shown = repr(settings) + str(settings)
    assert "key-one-secret" not in shown  # secrets never reach a settings dump or a log line
    assert "redis-pw-secret" not in shown

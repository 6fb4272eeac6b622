"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against live APIs, both executors."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ALICE, BOB, LiveApi
from tests.live import submit

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed (scripts/test installs it: apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live_api: LiveApi) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    tab = context.new_page()
    tab.goto(live_api.url + "/")
    tab.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    expect(tab.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    yield tab
    context.close()


def start_from_form(page: Page, name: str, **params: str) -> str:
    """Fill the form generated for `name` and press Start; returns the new task's id."""
    page.select_option("#task-name", name)
    for field, value in params.items():
        page.fill(f"#param-{field}", value)
    previous = page.get_attribute("#start-notice", "data-started-id") or ""
    page.click("#start")
    page.wait_for_function(
        "previous => (document.querySelector('#start-notice').dataset.startedId || '') !== previous", arg=previous
    )
    task_id = page.get_attribute("#start-notice", "data-started-id")
    assert task_id
    return task_id


def bar_value(page: Page, task_id: str) -> int:
    value = page.get_attribute(f"tr[data-id='{task_id}'] [role=progressbar]", "aria-valuenow")
    return int(value or 0)


def test_start_a_task_from_the_form_and_watch_its_bar_move_and_finish(page: Page, live_api: LiveApi) -> None:
    task_id = start_from_form(page, "sleep", seconds="3")
    row = page.locator(f"tr[data-id='{task_id}']")
    expect(row).to_be_visible(timeout=WAIT_MS)
    value = f"+document.querySelector(\"tr[data-id='{task_id}'] [role=progressbar]\").getAttribute('aria-valuenow')"
    page.wait_for_function(f"() => {value} > 0 && {value} < 100", timeout=WAIT_MS)
    first = bar_value(page, task_id)
    page.wait_for_function(f"first => {value} > first", arg=first, timeout=WAIT_MS)
    assert bar_value(page, task_id) > first  # it moved with the task's progress events
    expect(row).to_have_attribute("data-state", "succeeded", timeout=WAIT_MS)
    assert bar_value(page, task_id) == 100
    row.locator("button.link").click()
    expect(page.locator(f"tr[data-details-for='{task_id}'] pre.outcome")).to_contain_text('"slept": 3', timeout=WAIT_MS)
    screenshot = os.environ.get("BGT_SCREENSHOT")  # scripts/screenshot sets it to refresh docs/dashboard.png
    if screenshot and live_api.executor == "celery":
        start_from_form(page, "fail", message="disk on fire")
        start_from_form(page, "sleep", seconds="20")
        page.wait_for_timeout(2_500)
        page.screenshot(path=Path(screenshot))


def test_cancel_a_running_task_from_its_row(page: Page) -> None:
    task_id = start_from_form(page, "sleep", seconds="600")
    row = page.locator(f"tr[data-id='{task_id}']")
    expect(row).to_have_attribute("data-state", "running", timeout=WAIT_MS)
    row.locator("button.cancel").click()
    expect(row).to_have_attribute("data-state", "cancelled", timeout=WAIT_MS)
    expect(row.locator("button.cancel")).to_have_count(0)


def test_a_failure_shows_its_error_and_the_filters_narrow_the_list(page: Page) -> None:
    failed = start_from_form(page, "fail", message="disk on fire")
    succeeded = start_from_form(page, "noop")
    expect(page.locator(f"tr[data-id='{failed}']")).to_have_attribute("data-state", "failed", timeout=WAIT_MS)
    expect(page.locator(f"tr[data-id='{succeeded}']")).to_have_attribute("data-state", "succeeded", timeout=WAIT_MS)
    expect(page.locator(f"tr[data-id='{failed}'] td.message")).to_have_text("RuntimeError: disk on fire")
    page.select_option("#filter-state", "failed")
    expect(page.locator(f"tr[data-id='{succeeded}']")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(f"tr[data-id='{failed}']")).to_be_visible()
    assert set(page.locator("#tasks tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.state)")) == {"failed"}
    page.select_option("#filter-state", "")
    page.select_option("#filter-name", "noop")
    expect(page.locator(f"tr[data-id='{failed}']")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(f"tr[data-id='{succeeded}']")).to_be_visible()


def test_the_form_shows_the_apis_refusal(page: Page) -> None:
    page.select_option("#task-name", "cpu")
    page.fill("#param-rounds", "0")
    page.click("#start")
    expect(page.locator("#start-notice.error")).to_contain_text("greater than or equal to 1", timeout=WAIT_MS)


def test_with_api_keys_the_page_works_with_a_key_and_shows_only_its_tasks(browser: Browser, secured_api: str) -> None:
    others = submit(secured_api, "noop", {"value": "not yours"}, headers=BOB)["id"]
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(secured_api + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    expect(page.locator("#live")).to_have_text("reconnecting", timeout=WAIT_MS)  # the stream refuses no key
    page.fill("#api-key", ALICE["X-API-Key"])
    page.dispatch_event("#api-key", "change")
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    task_id = start_from_form(page, "sleep", seconds="1")
    row = page.locator(f"tr[data-id='{task_id}']")
    expect(row).to_have_attribute("data-state", "succeeded", timeout=WAIT_MS)  # followed live, with the key
    expect(page.locator(f"tr[data-id='{others}']")).to_have_count(0)
    context.close()

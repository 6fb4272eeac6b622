"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against live APIs, both executors.

Every page is watched for what its Content-Security-Policy refuses (the `securitypolicyviolation` event and
Chromium's console report) and for uncaught errors: a test that leaves any fails at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from redis import Redis

from api.routes_ui import SECURITY_HEADERS
from shared.keys import PROCESSES
from tests.conftest import ALICE, BOB, LiveApi
from tests.live import submit, wait_finished

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
WAIT_MS = 30_000
# Installed before the page's own script runs, so nothing the page does while loading goes unnoticed.
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@dataclass
class Dashboard:
    page: Page
    headers: dict[str, str]  # of the page's own response
    errors: list[str] = field(default_factory=list)  # uncaught exceptions, and CSP refusals Chromium logged

    def problems(self) -> list[str]:
        return self.errors + cast(list[str], self.page.evaluate("window.cspViolations || []"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed (scripts/test installs it: apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@contextmanager
def open_dashboard(browser: Browser, base: str) -> Iterator[Dashboard]:
    """The page in a fresh context, watched; it fails on leaving if the page broke its CSP or threw."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    tab = context.new_page()
    tab.add_init_script(WATCH_CSP)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    tab.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    response = tab.goto(base + "/")
    assert response is not None
    tab.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    dashboard = Dashboard(tab, response.headers, errors)
    yield dashboard
    problems = dashboard.problems()
    context.close()
    assert problems == [], problems


@pytest.fixture
def dashboard(browser: Browser, live_api: LiveApi) -> Iterator[Dashboard]:
    with open_dashboard(browser, live_api.url) as opened:
        expect(opened.page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
        yield opened


@pytest.fixture
def page(dashboard: Dashboard) -> Page:
    return dashboard.page


def start_from_form(page: Page, name: str, **params: str) -> str:
    """Fill the form generated for `name` and press Start; returns the new task's id."""
    page.select_option("#task-name", name)
    for param, value in params.items():
        page.fill(f"#param-{param}", value)
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


def test_start_a_task_from_the_form_and_watch_its_bar_move_and_finish(page: Page) -> None:
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
    with open_dashboard(browser, secured_api) as dashboard:
        page = dashboard.page
        expect(page.locator("#live")).to_have_text("reconnecting", timeout=WAIT_MS)  # the stream refuses no key
        expect(page.locator("#overview-notice")).to_contain_text("API key", timeout=WAIT_MS)  # and so does /overview
        page.fill("#api-key", ALICE["X-API-Key"])
        page.dispatch_event("#api-key", "change")
        expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
        task_id = start_from_form(page, "sleep", seconds="1")
        row = page.locator(f"tr[data-id='{task_id}']")
        expect(row).to_have_attribute("data-state", "succeeded", timeout=WAIT_MS)  # followed live, with the key
        expect(page.locator(f"tr[data-id='{others}']")).to_have_count(0)
        expect(page.locator("#overview-notice")).to_be_hidden(timeout=WAIT_MS)  # /overview answers with the key
        page.wait_for_function(f"() => {count_of('succeeded')} >= 1", timeout=WAIT_MS)
        expect(page.locator("#workers tr[data-kind=api][data-gone=false]")).not_to_have_count(0)


# ---- the panels beside the table: counts, workers, queues, charts (GET /overview), and the page's CSP ----


def count_of(state: str) -> str:
    """A JavaScript expression: the count the page shows for `state` (NaN before the first overview)."""
    return f"+document.querySelector('#counts .tile[data-state={state}]').dataset.count"


def next_overview(page: Page) -> None:
    """Wait until the page has drawn an /overview answer it asked for after now."""
    seen = int(page.evaluate("+(document.body.dataset.overviews || 0)"))
    page.wait_for_function(f"() => +(document.body.dataset.overviews || 0) > {seen}", timeout=WAIT_MS)


def test_the_page_sends_its_security_headers_and_runs_under_its_csp(dashboard: Dashboard) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert dashboard.headers[name.lower()] == value
    page = dashboard.page
    next_overview(page)
    task_id = start_from_form(page, "sleep", seconds="0.5")  # bars, chips, details: all drawn under the CSP
    expect(page.locator(f"tr[data-id='{task_id}']")).to_have_attribute("data-state", "succeeded", timeout=WAIT_MS)
    page.locator(f"tr[data-id='{task_id}'] button.link").click()
    expect(page.locator(f"tr[data-details-for='{task_id}']")).to_be_visible()
    next_overview(page)
    assert dashboard.problems() == []
    # The watch itself works: what the CSP refuses is reported (then forgotten, so the teardown check passes).
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("() => window.cspViolations.length > 0", timeout=WAIT_MS)
    assert any("style-src" in problem for problem in dashboard.problems())
    page.evaluate("window.cspViolations = []")
    dashboard.errors.clear()


def test_the_panels_show_workers_counts_queues_and_charts(page: Page, live_api: LiveApi) -> None:
    next_overview(page)
    before = {state: int(page.evaluate(count_of(state))) for state in ("succeeded", "failed")}
    succeeded = [submit(live_api.url, "noop", {"value": n})["id"] for n in range(3)]
    succeeded.append(submit(live_api.url, "sleep", {"seconds": 0.3})["id"])
    failed = [submit(live_api.url, "fail", {"message": "counted"})["id"] for _ in range(2)]
    for task_id in succeeded + failed:
        wait_finished(live_api.url, task_id)
    page.wait_for_function(
        f"([ok, bad]) => {count_of('succeeded')} >= ok && {count_of('failed')} >= bad",
        arg=[before["succeeded"] + len(succeeded), before["failed"] + len(failed)],
        timeout=WAIT_MS,
    )
    # each task's executor, in the table and in the start form (from /catalog)
    expect(page.locator(f"tr[data-id='{succeeded[0]}'] td.executor")).to_have_text(live_api.executor, timeout=WAIT_MS)
    page.select_option("#task-name", "sleep")
    expect(page.locator("#task-route")).to_have_attribute("data-executor", live_api.executor)
    # the charts: tasks ended per 10 s (failures apart), and latency percentiles
    expect(page.locator("#throughput rect.ok")).not_to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#throughput rect.failed")).not_to_have_count(0, timeout=WAIT_MS)
    assert int(page.get_attribute("#throughput", "data-filled") or 0) >= 1
    expect(page.locator("#latency circle[data-key=run_p95]")).not_to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#latency-summary")).to_contain_text("run p50")
    # the processes: this API, and under Celery the session's worker and the queue it consumes
    api_row = page.locator(f"#workers tr[data-kind=api][data-name$=':{live_api.proc.popen.pid}']")
    expect(api_row).to_have_attribute("data-gone", "false", timeout=WAIT_MS)
    expect(api_row.locator("td.seen")).to_contain_text(" s ago")
    if live_api.executor == "celery":
        expect(api_row).to_contain_text("dispatch only")  # every task goes to the workers
        worker = page.locator("#workers tr[data-kind=worker][data-name^='f1@'][data-gone=false]")
        expect(worker).to_have_count(1, timeout=WAIT_MS)
        expect(worker).to_contain_text("celery")
        queue = page.locator("#queues tr[data-queue=celery]")
        expect(queue).to_have_attribute("data-consumers", "1", timeout=WAIT_MS)
        expect(queue).to_have_attribute("data-depth", "0", timeout=WAIT_MS)
        expect(queue).not_to_have_class("orphan")
    else:
        expect(api_row.locator(".chip.background")).to_have_count(1)
        expect(page.locator("#queues")).to_contain_text("every task runs in the API processes")
    screenshot = os.environ.get("BGT_SCREENSHOT")  # scripts/screenshot sets it to refresh docs/dashboard.png
    if screenshot and live_api.executor == "celery":
        pose_for_the_picture(page, live_api.url, Path(screenshot))


def test_a_process_that_stopped_reporting_is_marked_gone(page: Page, follow_env: dict[str, str]) -> None:
    name = "stopped@nowhere:1"  # a worker's last report, ten minutes old, as a crashed worker leaves it
    report = {"name": name, "kind": "worker", "executors": ["celery"], "queues": ["celery"], "running": 1}
    report |= {"every": 10.0, "seen": time.time() - 600}
    with Redis.from_url(follow_env["REDIS_URL"]) as redis:
        redis.hset(PROCESSES, name, json.dumps(report))
        try:
            row = page.locator(f"#workers tr[data-name='{name}']")
            expect(row).to_have_attribute("data-gone", "true", timeout=WAIT_MS)
            expect(row).to_have_class("gone")
            expect(row.locator("td.seen")).to_contain_text("gone")
            expect(row.locator("td.seen")).to_contain_text("10 min ago")
            expect(page.locator("#workers-summary")).to_contain_text("1 gone")
        finally:
            redis.hdel(PROCESSES, name)


def pose_for_the_picture(page: Page, base: str, path: Path) -> None:
    """Three quarters of a minute of mixed work, so every panel of the README's picture has something in it."""
    until = time.monotonic() + 45
    for turn in range(1000):
        if time.monotonic() > until:
            break
        submit(base, "noop")
        submit(base, "sleep", {"seconds": 0.5 + turn % 4 * 0.5})
        submit(base, "cpu", {"rounds": 100_000 * (1 + turn % 3)})
        if turn % 4 == 0:
            submit(base, "fail", {"message": "disk on fire"})
        time.sleep(2.5)
    start_from_form(page, "fail", message="disk on fire")
    start_from_form(page, "sleep", seconds="20")
    page.set_viewport_size({"width": 1280, "height": 960})
    page.evaluate("window.scrollTo(0, 0)")  # the form's clicks scrolled down to it
    page.mouse.move(1, 1)  # and left the pointer over a chart, which would highlight a bucket
    page.wait_for_timeout(3_500)  # the next overview, and the new task's bar under way
    page.screenshot(path=path)

"""The coordinator's path through the real pages in a real browser (headless Chromium via Playwright).

A uvicorn server runs in a thread over a temporary SQLite database with a coordinator account.
Flow: log in -> worklist -> open a patient -> record a cycle -> refused (CYCLE_TOO_EARLY, with its
source) -> override with a reason -> accepted and shown in the timeline. Screenshots of each step
go to test-artifacts/. Debian's chromium is used (`scripts/test` installs it); a missing browser
fails the test: it is never skipped.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pathway import Engine, ManualClock
from pathway.web import create_app

CHROMIUM = os.environ.get("PATHWAY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "correct horse battery staple"
TODAY = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
QUORUM = ["liver_surgeon", "radiologist", "oncologist"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(sqlite_url: str) -> Iterator[str]:
    import uvicorn

    with Engine.open(sqlite_url, clock=ManualClock(TODAY)) as engine:
        for event in [
            {"patient": "P1", "type": "referral", "on": "2026-01-05", "data": {"primary": "colorectal"}},
            {"patient": "P1", "type": "mdt_scheduled", "on": "2026-01-06", "data": {"meeting_on": "2026-01-12"}},
            {"patient": "P1", "type": "mdt_decision", "on": "2026-01-12", "data": {
                "attendees": QUORUM, "plan": "perioperative_chemotherapy", "resectability": "resectable",
                "complete_resection_feasible": True, "operative_risk": "low", "flr_percent": 40}},
            {"patient": "P1", "type": "cycle_given", "on": "2026-01-19", "data": {"cycle": 1}},
        ]:
            assert engine.record(event, by="setup").ok
        app = create_app(engine)
        app.state.accounts.add_user("coord", "coordinator", PASSWORD)
        port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not srv.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the uvicorn server did not start")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            srv.should_exit = True
            thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(run scripts/test, which installs it, or `apt-get install -y chromium` as root)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: install the test extras (scripts/test does)",
                    pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def test_coordinator_records_a_cycle_sees_a_refusal_and_overrides_it(server: str, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("browser-*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    csp_violations: list[str] = []
    page.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)

    def shot(name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True, timeout=30_000)

    # log in
    page.goto(f"{server}/")
    assert "/login" in page.url
    page.fill("input[name=name]", "coord")
    page.fill("input[name=password]", PASSWORD)
    shot("01-login")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")

    # the worklist: P1's second cycle is due today
    assert page.locator("h1").first.inner_text().startswith("Worklist")
    row = page.locator('#section-today tr[data-patient="P1"][data-kind="chemo_cycle"]')
    assert row.count() == 1
    shot("02-worklist")

    # open the patient
    row.locator("a").click()
    page.wait_for_url(f"{server}/patients/P1")
    assert page.locator("dd.state").inner_text() == "neoadjuvant_chemo"
    assert page.locator('svg.pathway-diagram g.state.current[data-state="neoadjuvant_chemo"]').count() == 1
    shot("03-patient")

    # record cycle 2 a week after cycle 1: refused
    form = page.locator("#form-cycle_given")
    form.locator("summary").click()
    form.locator("input[name=on]").fill("2026-01-26")
    form.locator('input[name="data.cycle"]').fill("2")
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    result = page.locator("#form-cycle_given .result.status-refused")
    result.wait_for()
    reason = result.locator('li.reason[data-code="CYCLE_TOO_EARLY"]')
    assert reason.count() == 1
    assert "Source:" in reason.locator(".source").inner_text()
    assert len(reason.locator(".source").inner_text()) > len("Source: ")
    shot("04-refused")

    # override with a reason: accepted
    form = page.locator("#form-cycle_given")
    form.locator('input[name=override][value="CYCLE_TOO_EARLY"]').check()
    form.locator('input[name="override_reason.CYCLE_TOO_EARLY"]').fill("clinic closed next week")
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{server}/patients/P1?recorded=cycle_given*")
    assert "Recorded: cycle_given" in page.locator(".flash").inner_text()
    mark = page.locator('svg.timeline g.actual[data-type="cycle_given"][data-date="2026-01-26"][data-status="accepted"]')
    assert mark.count() == 1
    assert "overridden" in (mark.get_attribute("class") or "")
    history = page.locator('table.history tr[data-type="cycle_given"][data-status="accepted"]').first
    assert "clinic closed next week" in history.inner_text()
    refused_row = page.locator('table.history tr[data-type="cycle_given"][data-status="refused"]')
    assert refused_row.count() == 1 and "CYCLE_TOO_EARLY" in refused_row.inner_text()
    page.locator("svg.timeline").scroll_into_view_if_needed()
    shot("05-accepted")

    assert csp_violations == [], csp_violations
    context.close()

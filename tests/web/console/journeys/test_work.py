"""A small team's day in the console, in headless Chromium against ``kanvaro serve``: sign in
through the console's form, create a project, add tasks on its board, move one across the
board (todo → in progress → done) by the plain form with JavaScript switched off and another
by drag-and-drop, see a move made stale by someone else refused, open a task, comment and log
time on it. Every page is watched: no CSP violation, no script error. The main pages are
saved as screenshots under docs/screenshots/ (and the board at phone width).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kanvaro.identity.sessions.policy import NEVER
from tests.browser import CHROMIUM_ARGS, ServedApp, Watch, chromium_or_skip, served_app
from tests.conftest import PASSWORD, TenantFixture
from tests.identity.sessions.conftest import set_policy

BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion
SHOTS = Path(__file__).resolve().parents[4] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory) -> Iterator[ServedApp]:
    chromium_or_skip()
    with served_app(settings, tmp_path_factory.mktemp("work-journey")) as running:
        yield running


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        yield launched
        await launched.close()


async def open_tab(chromium: Any, watch: Watch, **options: Any) -> tuple[Any, Any]:
    context = await chromium.new_context(viewport=DESKTOP, **options)
    context.set_default_timeout(BOUND_MS)
    tab = await context.new_page()
    watch.attach(tab)
    return context, tab


async def sign_in(tab: Any, served: ServedApp, tenant: TenantFixture, email: str) -> None:
    await tab.goto(f"{served.origin}/t/{tenant.slug}/sign-in")
    await tab.fill("#email", email)
    await tab.fill("#password", PASSWORD)
    await tab.click("button[type=submit]")
    await tab.wait_for_url(f"{served.origin}/t/{tenant.slug}/")


def column(status: str) -> str:
    return f'section.column[data-status="{status}"]'


def card(title: str) -> str:
    return f'li.card:has(a.card-title:text-is("{title}"))'


async def drag(tab: Any, source: str, target: str) -> None:
    """A drag with the mouse, from the card's quiet part (not its link or its form) to the
    column, in steps, as a person drags."""
    grip = await tab.locator(f"{source} .card-meta").bounding_box()
    into = await tab.locator(target).bounding_box()
    await tab.mouse.move(grip["x"] + grip["width"] - 4, grip["y"] + grip["height"] / 2)
    await tab.mouse.down()
    await tab.mouse.move(into["x"] + into["width"] / 2, into["y"] + 20, steps=8)
    await tab.mouse.move(into["x"] + into["width"] / 2, into["y"] + into["height"] / 2, steps=4)
    await tab.mouse.up()


async def shot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await tab.screenshot(path=str(SHOTS / f"work-{name}.png"), full_page=True)


async def test_a_project_from_creation_to_daily_work(
    chromium: Any, served: ServedApp, tenant: TenantFixture
):
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    dev = await tenant.member("team_member")
    watch = Watch()
    context, tab = await open_tab(chromium, watch)
    base = f"{served.origin}/t/{tenant.slug}"

    # Sign in through the console's own form; create a project.
    await sign_in(tab, served, tenant, tenant.admin.email)
    await tab.click('nav a:text-is("Projects")')
    await tab.click('a:text-is("New project")')
    await tab.fill("#p-name", "Launch the website")
    await tab.fill("#p-description", "Everything the new site needs before it goes live.")
    await tab.select_option("#p-status", "active")
    await tab.fill("#p-budget", "12000")
    await tab.fill("#p-start", "2026-11-02")
    await tab.fill("#p-end", "2027-01-29")
    await tab.click('button:text-is("Create project")')
    await tab.wait_for_selector('p.notice:text("Project created.")')
    project_url = tab.url.split("?")[0]
    project_id = project_url.rsplit("/", 1)[1]
    await tab.select_option("#m-user", label=f"Test Person ({dev.email})")
    await tab.click('button:text-is("Add member")')
    await tab.wait_for_selector('p.notice:text("Member added.")')
    await shot(tab, "project")

    # Tasks on the board.
    await tab.click('nav.subnav a:text-is("Board")')
    for title in ("Write the copy", "Pick the photos", "Set up hosting"):
        await tab.fill("#t-title", title)
        await tab.click('button:text-is("Add task")')
        await tab.wait_for_selector(f"{column('todo')} {card(title)}")
    board_url = tab.url.split("?")[0]

    # Drag-and-drop: todo → in progress → done, through the JSON API with If-Match (once the
    # board's script has made the cards draggable).
    await tab.wait_for_selector(f'{card("Pick the photos")}[draggable="true"]')
    await drag(tab, card("Pick the photos"), column("in-progress"))
    await tab.wait_for_selector(f"{column('in-progress')} {card('Pick the photos')}")
    await drag(tab, card("Pick the photos"), column("done"))
    await tab.wait_for_selector(f"{column('done')} {card('Pick the photos')}")
    await tab.reload()  # the server has it where the board shows it
    await tab.wait_for_selector(f"{column('done')} {card('Pick the photos')}")

    # A move made stale by someone else's change: refused, and the card shows where it is.
    hosting = await _task_by_title(tenant, project_id, "Set up hosting")
    r = await tenant.client.patch(
        f"/api/v1/tasks/{hosting['id']}",
        headers=tenant.admin.headers,
        json={"status": "review", "version": hosting["version"]},
    )
    assert r.status_code == 200, r.text
    await drag(tab, card("Set up hosting"), column("done"))
    await tab.wait_for_selector('#board-message:text("changed by someone else")')
    await tab.wait_for_selector(f"{column('review')} {card('Set up hosting')}")
    assert (await _task_by_title(tenant, project_id, "Set up hosting"))["status"] == "review"
    await tab.reload()
    await shot(tab, "board")
    await tab.set_viewport_size(PHONE)
    await tab.screenshot(path=str(SHOTS / "work-board-phone.png"), full_page=True)
    await tab.set_viewport_size(DESKTOP)

    # Without JavaScript: the card's own form moves it, todo → in progress → done.
    plain_watch = Watch()
    plain, plain_tab = await open_tab(chromium, plain_watch, java_script_enabled=False)
    await sign_in(plain_tab, served, tenant, tenant.admin.email)
    await plain_tab.goto(board_url)
    for status in ("in-progress", "done"):
        copy = card("Write the copy")
        await plain_tab.select_option(f"{copy} select[name=status]", status)
        await plain_tab.click(f'{copy} button:text-is("Move")')
        await plain_tab.wait_for_selector('p.notice:text("Task moved.")')
        await plain_tab.wait_for_selector(f"{column(status)} {card('Write the copy')}")
    assert (await _task_by_title(tenant, project_id, "Write the copy"))["status"] == "done"
    plain_watch.assert_clean()
    await plain.close()

    # Open a task; comment on it and log time.
    await tab.goto(board_url)
    await tab.click('a.card-title:text-is("Pick the photos")')
    await tab.wait_for_selector('h1:text-is("Pick the photos")')
    await tab.fill("#c-body", "Shortlist is in the shared folder.")
    await tab.click('button:text-is("Comment")')
    await tab.wait_for_selector('p.notice:text("Comment added.")')
    await tab.fill("#e-date", "2026-11-03")
    await tab.fill("#e-hours", "1.5")
    await tab.fill("#e-note", "Went through the archive")
    await tab.click('button:text-is("Log time")')
    await tab.wait_for_selector('p.notice:text("Time logged.")')
    await tab.wait_for_selector('td:text-is("Went through the archive")')
    await shot(tab, "task")
    photos = await _task_by_title(tenant, project_id, "Pick the photos")
    comments = await tenant.client.get(
        f"/api/v1/tasks/{photos['id']}/comments", headers=tenant.admin.headers
    )
    assert [c["body"] for c in comments.json()["items"]] == ["Shortlist is in the shared folder."]
    hours = await tenant.client.get(
        f"/api/v1/time-entries?taskId={photos['id']}", headers=tenant.admin.headers
    )
    assert [e["hours"] for e in hours.json()["items"]] == ["1.50"]

    # Money: a budget entry and an invoice, for the screenshots of those pages.
    await tab.goto(f"{project_url}/budget")
    await tab.select_option("#b-kind", "expense")
    await tab.fill("#b-category", "hosting")
    await tab.fill("#b-description", "First year of hosting")
    await tab.fill("#b-amount", "480")
    await tab.click('button:text-is("Add entry")')
    await tab.wait_for_selector('p.notice:text("Budget entry added.")')
    await shot(tab, "budget")
    await tab.goto(f"{project_url}/invoices")
    await tab.fill("#i-client", "Northwind Bakery")
    await tab.fill("#l0-d", "Website design")
    await tab.fill("#l0-q", "1")
    await tab.fill("#l0-p", "4800")
    await tab.click('button:text-is("Create draft invoice")')
    await tab.wait_for_selector('p.notice:text("Invoice created.")')
    await tab.click('button:text-is("Mark as sent")')
    await tab.wait_for_selector('span.badge:text-is("sent")')
    await shot(tab, "invoice")
    await tab.goto(f"{project_url}/invoices")
    await shot(tab, "invoices")
    await tab.goto(f"{project_url}/time")
    await shot(tab, "time")
    await tab.goto(f"{base}/projects")
    await tab.wait_for_selector('a:text-is("Launch the website")')
    await shot(tab, "projects")
    # The one refused request is the stale move (412), which the board said it refused.
    watch.assert_clean(refused=frozenset({f"/api/v1/tasks/{hosting['id']}"}))
    await context.close()


async def _task_by_title(tenant: TenantFixture, project_id: str, title: str) -> dict[str, Any]:
    r = await tenant.client.get(
        f"/api/v1/tasks?projectId={project_id}", headers=tenant.admin.headers
    )
    assert r.status_code == 200, r.text
    return next(t for t in r.json()["items"] if t["title"] == title)

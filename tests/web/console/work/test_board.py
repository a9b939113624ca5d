"""The task board: a column per status, cards moved by their plain form with the version they
were drawn from (a stale one changes nothing), and the new-task form."""

from __future__ import annotations

import httpx

from kanvaro.work.models import TASK_STATUSES
from tests.conftest import TenantFixture
from tests.web.console.conftest import sign_in, submit
from tests.web.console.work.conftest import api_get, api_member, api_project, api_task


async def test_the_board_has_a_column_per_status_and_the_cards(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Board one")
    member = await tenant.member("team_member")
    await api_member(tenant, project["id"], member.id)
    await api_task(tenant, project["id"], "Todo card", priority="high")
    await api_task(tenant, project["id"], "Review card", status="review", dueDate="2026-12-24")
    await sign_in(browser, tenant, member.email)
    page = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}/board")
    assert page.status_code == 200
    for status in TASK_STATUSES:
        assert f'<section class="column" data-status="{status}"' in page.text
    todo = page.text.split('<section class="column" data-status="todo"')[1].split("</section>")[0]
    review = page.text.split('<section class="column" data-status="review"')[1].split("</section>")[
        0
    ]
    assert "Todo card" in todo and "Review card" not in todo
    assert "Review card" in review and "2026-12-24" in review
    assert 'class="move"' in page.text  # team_member holds task:update
    assert "/static/console/work-board.js" in page.text
    script = await browser.get("/static/console/work-board.js")
    assert script.status_code == 200 and "If-Match" in script.text


async def test_moving_a_card_by_its_form_and_a_stale_version(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Board two")
    task = await api_task(tenant, project["id"], "Move me")
    await sign_in(browser, tenant, tenant.admin.email)
    board = f"/t/{tenant.slug}/projects/{project['id']}/board"
    moved = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/tasks/{task['id']}/move",
        {"status": "in-progress", "version": str(task["version"])},
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{board}?notice=task-moved"
    now = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
    assert now["status"] == "in-progress" and now["version"] == task["version"] + 1
    # The card as it was drawn before: version 1. Someone moved it meanwhile.
    stale = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/tasks/{task['id']}/move",
        {"status": "done", "version": str(task["version"])},
    )
    assert stale.status_code == 412
    assert "changed by someone else" in stale.text
    assert 'data-status="in-progress"' in stale.text  # the board as it is now
    after = await api_get(tenant, f"/api/v1/tasks/{task['id']}")
    assert after["status"] == "in-progress" and after["version"] == now["version"]
    page = await browser.get(moved.headers["location"])
    assert "Task moved." in page.text


async def test_a_bad_move_is_a_message_never_a_500(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Board three")
    task = await api_task(tenant, project["id"], "Stay")
    await sign_in(browser, tenant, tenant.admin.email)
    board = f"/t/{tenant.slug}/projects/{project['id']}/board"
    for data in (
        {"status": "finished", "version": "1"},
        {"status": "done", "version": "one"},
        {"status": "done"},
    ):
        r = await submit(browser, board, f"/t/{tenant.slug}/tasks/{task['id']}/move", data)
        assert r.status_code in (412, 422, 428), (data, r.status_code)
        assert "Board three" in r.text
    assert (await api_get(tenant, f"/api/v1/tasks/{task['id']}"))["status"] == "todo"
    evil = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/tasks/{task['id']}/move",
        {"status": "done", "version": "1", "next": "//evil.example/"},
    )
    assert evil.status_code == 303 and evil.headers["location"].startswith(board)


async def test_creating_a_task_on_the_board(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await api_project(tenant, "Board four")
    await sign_in(browser, tenant, tenant.admin.email)
    board = f"/t/{tenant.slug}/projects/{project['id']}/board"
    r = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/projects/{project['id']}/tasks",
        {
            "title": "Fresh task",
            "priority": "critical",
            "status": "review",
            "dueDate": "2026-08-01",
        },
    )
    assert r.status_code == 303
    tasks = (await api_get(tenant, f"/api/v1/tasks?projectId={project['id']}"))["items"]
    assert [(t["title"], t["priority"], t["status"], t["dueDate"]) for t in tasks] == [
        ("Fresh task", "critical", "review", "2026-08-01")
    ]
    blank = await submit(
        browser, board, f"/t/{tenant.slug}/projects/{project['id']}/tasks", {"title": " "}
    )
    assert blank.status_code == 422 and "<code>title</code>" in blank.text
    bad_date = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/projects/{project['id']}/tasks",
        {"title": "Dated", "dueDate": "31/12/2026"},
    )
    assert bad_date.status_code == 422 and "dueDate" in bad_date.text
    assert len((await api_get(tenant, f"/api/v1/tasks?projectId={project['id']}"))["items"]) == 1


async def test_a_project_manager_assigns_on_the_new_task_form(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Board five")
    pm = await tenant.member("project_manager")
    dev = await tenant.member("team_member")
    await api_member(tenant, project["id"], dev.id)
    await sign_in(browser, tenant, pm.email)
    board = f"/t/{tenant.slug}/projects/{project['id']}/board"
    page = await browser.get(board)
    assert 'name="assigneeId"' in page.text and dev.id in page.text
    r = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/projects/{project['id']}/tasks",
        {"title": "Assigned one", "assigneeId": dev.id},
    )
    assert r.status_code == 303
    task = (await api_get(tenant, f"/api/v1/tasks?projectId={project['id']}"))["items"][0]
    assert task["assigneeIds"] == [dev.id]
    shown = await browser.get(board)
    assert "Test Person" in shown.text  # the assignee's name on the card


async def test_a_client_sees_the_board_but_cannot_move_cards(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Board six")
    task = await api_task(tenant, project["id"], "Look only")
    client = await tenant.member("client")
    await api_member(tenant, project["id"], client.id, "observer")
    await sign_in(browser, tenant, client.email)
    board = f"/t/{tenant.slug}/projects/{project['id']}/board"
    page = await browser.get(board)
    assert page.status_code == 200 and "Look only" in page.text
    assert 'class="move"' not in page.text and "New task" not in page.text
    r = await submit(
        browser,
        board,
        f"/t/{tenant.slug}/tasks/{task['id']}/move",
        {"status": "done", "version": "1"},
    )
    assert r.status_code == 403
    create = await submit(
        browser, board, f"/t/{tenant.slug}/projects/{project['id']}/tasks", {"title": "No"}
    )
    assert create.status_code == 403
    assert (await api_get(tenant, f"/api/v1/tasks/{task['id']}"))["status"] == "todo"


async def test_a_task_of_another_project_or_tenant_cannot_be_moved(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    mine = await api_project(tenant, "Board seven")
    hidden = await api_project(tenant, "Board hidden")
    hidden_task = await api_task(tenant, hidden["id"], "Hidden card")
    theirs = await api_project(other_tenant, "Board theirs")
    their_task = await api_task(other_tenant, theirs["id"], "Their card")
    member = await tenant.member("team_member")
    await api_member(tenant, mine["id"], member.id)
    await sign_in(browser, tenant, member.email)
    board = f"/t/{tenant.slug}/projects/{mine['id']}/board"
    for task in (hidden_task, their_task):
        r = await submit(
            browser,
            board,
            f"/t/{tenant.slug}/tasks/{task['id']}/move",
            {"status": "done", "version": "1"},
        )
        assert r.status_code == 404
        assert (await browser.get(f"/t/{tenant.slug}/tasks/{task['id']}")).status_code == 404
    assert (await api_get(tenant, f"/api/v1/tasks/{hidden_task['id']}"))["status"] == "todo"
    after = await other_tenant.client.get(
        f"/api/v1/tasks/{their_task['id']}", headers=other_tenant.admin.headers
    )
    assert after.json()["status"] == "todo"


async def test_a_move_without_the_form_token_or_from_another_site_is_refused(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    project = await api_project(tenant, "Board eight")
    task = await api_task(tenant, project["id"], "Guarded")
    await sign_in(browser, tenant, tenant.admin.email)
    move = f"/t/{tenant.slug}/tasks/{task['id']}/move"
    bare = await browser.post(move, data={"status": "done", "version": "1"})
    assert bare.status_code == 403
    page = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}/board")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    foreign = await browser.post(
        move,
        data={"csrf_token": token, "status": "done", "version": "1"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert (await api_get(tenant, f"/api/v1/tasks/{task['id']}"))["status"] == "todo"


async def test_a_board_with_more_cards_than_a_page_pages_on(
    browser: httpx.AsyncClient, tenant: TenantFixture, monkeypatch
):
    """Every card can be reached: past a page the board links to the next one (the API's
    cursor), and a cursor that is not one is a 400, never a 500."""
    import html
    import re

    from kanvaro.web.console.work import board

    monkeypatch.setattr(board, "BOARD_LIMIT", 2)
    project = await api_project(tenant, "Long board")
    titles = [f"Card {n}" for n in range(5)]
    for title in titles:
        await api_task(tenant, project["id"], title)
    await sign_in(browser, tenant, tenant.admin.email)
    url = f"/t/{tenant.slug}/projects/{project['id']}/board"
    seen: list[str] = []
    pages = 0
    while url:
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        pages += 1
        seen += [t for t in titles if f">{t}</a>" in page.text]
        assert ("First cards" in page.text) == (pages > 1)
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = html.unescape(found.group(1)) if found else None
    assert pages == 3 and seen == titles  # each card once, oldest first
    bad = await browser.get(f"/t/{tenant.slug}/projects/{project['id']}/board?after=not-a-cursor")
    assert bad.status_code == 400

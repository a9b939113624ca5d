from __future__ import annotations

import pytest

from tests.work.conftest import actions_for, join, new_project, walk

pytestmark = pytest.mark.asyncio


async def _setup(tenant, make_member):
    """A project with a task, two team members in it, and a project manager."""
    project = await new_project(tenant)
    r = await tenant.client.post(
        "/api/v1/tasks",
        headers=tenant.admin.headers,
        json={"projectId": project["id"], "title": "Discuss"},
    )
    assert r.status_code == 201
    alice = await make_member(tenant, "team_member")
    bob = await make_member(tenant, "team_member")
    for m in (alice, bob):
        await join(tenant, project["id"], m)
    return project, r.json(), alice, bob


async def _comment(client, task_id, member, body="<p>Looks good</p>"):
    r = await client.post(
        f"/api/v1/tasks/{task_id}/comments", headers=member.headers, json={"body": body}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_comment_crud_and_audit(tenant, make_member, services):
    c = tenant.client
    _, task, alice, bob = await _setup(tenant, make_member)
    comment = await _comment(c, task["id"], alice)
    assert comment["authorId"] == alice.id and comment["version"] == 1
    url = f"/api/v1/tasks/{task['id']}/comments/{comment['id']}"

    assert (await c.get(url, headers=bob.headers)).json()["body"] == "<p>Looks good</p>"
    listed = await walk(c, f"/api/v1/tasks/{task['id']}/comments", bob.headers)
    assert [x["id"] for x in listed] == [comment["id"]]

    r = await c.patch(url, headers=alice.headers, json={"body": "<p>Better</p>", "version": 1})
    assert r.status_code == 200 and r.json()["body"] == "<p>Better</p>"
    assert r.json()["version"] == 2
    stale = await c.patch(url, headers=alice.headers, json={"body": "Lost?", "version": 1})
    assert stale.status_code == 412
    assert (await c.get(url, headers=alice.headers)).json()["body"] == "<p>Better</p>"

    assert (await c.delete(url, headers=alice.headers)).status_code == 204
    assert (await c.get(url, headers=alice.headers)).status_code == 404
    assert await actions_for(services, comment["id"]) == [
        "api:comment:create",
        "api:comment:update",
        "api:comment:delete",
    ]


async def test_body_is_sanitized_and_validated(tenant, make_member):
    c = tenant.client
    _, task, alice, _ = await _setup(tenant, make_member)
    comment = await _comment(
        c, task["id"], alice, '<p><strong onclick="x()">Bold</strong><script>bad()</script></p>'
    )
    assert comment["body"] == "<p><strong>Bold</strong></p>"
    url = f"/api/v1/tasks/{task['id']}/comments"
    for body, field in (
        ({"body": "x" * 5001}, "body"),
        ({"body": "<script>only()</script>"}, "body"),
        ({"body": "ok", "pinned": True}, "pinned"),
        ({}, "body"),
    ):
        r = await c.post(url, headers=alice.headers, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field


async def test_only_the_author_edits_and_deletes(tenant, make_member, services):
    c = tenant.client
    _, task, alice, bob = await _setup(tenant, make_member)
    comment = await _comment(c, task["id"], alice)
    url = f"/api/v1/tasks/{task['id']}/comments/{comment['id']}"
    r = await c.patch(url, headers=bob.headers, json={"body": "Hijacked", "version": 1})
    assert r.status_code == 403
    assert (await c.delete(url, headers=bob.headers)).status_code == 403
    assert (await c.get(url, headers=alice.headers)).json()["body"] == "<p>Looks good</p>"
    assert await actions_for(services, comment["id"]) == ["api:comment:create"]


async def test_moderator_deletes_but_cannot_edit(tenant, make_member, services):
    c = tenant.client
    _, task, alice, _ = await _setup(tenant, make_member)
    pm = await make_member(tenant, "project_manager")  # holds comment:delete
    comment = await _comment(c, task["id"], alice)
    url = f"/api/v1/tasks/{task['id']}/comments/{comment['id']}"
    r = await c.patch(url, headers=pm.headers, json={"body": "Rewritten", "version": 1})
    assert r.status_code == 403
    assert (await c.delete(url, headers=pm.headers)).status_code == 204
    assert await actions_for(services, comment["id"]) == [
        "api:comment:create",
        "api:comment:delete",
    ]


async def test_viewer_reads_but_cannot_comment(tenant, make_member):
    c = tenant.client
    project, task, alice, _ = await _setup(tenant, make_member)
    viewer = await make_member(tenant, "viewer")
    await join(tenant, project["id"], viewer)
    comment = await _comment(c, task["id"], alice)
    url = f"/api/v1/tasks/{task['id']}/comments"
    assert (await c.get(url, headers=viewer.headers)).status_code == 200
    r = await c.post(url, headers=viewer.headers, json={"body": "Me too"})
    assert r.status_code == 403
    r = await c.delete(f"{url}/{comment['id']}", headers=viewer.headers)
    assert r.status_code == 403


async def test_invisible_task_and_other_tenant_get_404(tenant, other_tenant, make_member):
    c = tenant.client
    _, task, alice, _ = await _setup(tenant, make_member)
    comment = await _comment(c, task["id"], alice)
    outsider = await make_member(tenant, "team_member")  # not a member of the project
    oc, oh = other_tenant.client, other_tenant.admin.headers
    url = f"/api/v1/tasks/{task['id']}/comments"
    one = f"{url}/{comment['id']}"
    for headers in (outsider.headers, oh):
        assert (await oc.get(url, headers=headers)).status_code == 404
        assert (await oc.get(one, headers=headers)).status_code == 404
        assert (await oc.post(url, headers=headers, json={"body": "Hi"})).status_code == 404
        r = await oc.patch(one, headers=headers, json={"body": "X", "version": 1})
        assert r.status_code == 404
    assert (await oc.delete(one, headers=oh)).status_code == 404
    # A comment reached through another task of the same tenant is not found either.
    r = await c.post(
        "/api/v1/tasks",
        headers=tenant.admin.headers,
        json={"projectId": task["projectId"], "title": "Other"},
    )
    other_task = r.json()["id"]
    r = await c.get(f"/api/v1/tasks/{other_task}/comments/{comment['id']}", headers=alice.headers)
    assert r.status_code == 404


async def test_deleting_a_task_deletes_its_comments(tenant, make_member):
    c = tenant.client
    _, task, alice, _ = await _setup(tenant, make_member)
    comment = await _comment(c, task["id"], alice)
    assert (
        await c.delete(f"/api/v1/tasks/{task['id']}", headers=tenant.admin.headers)
    ).status_code == 204
    r = await c.get(
        f"/api/v1/tasks/{task['id']}/comments/{comment['id']}", headers=tenant.admin.headers
    )
    assert r.status_code == 404

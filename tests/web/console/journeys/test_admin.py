"""The administration in headless Chromium against ``kanvaro serve``: the admin signs in
through the console's form, invites a user from the users page (the mail is in the outbox),
creates a custom role, requires MFA for a role on the policies page (the next sign-in of a
member of that role is an enrollment-only one, as the API shows), and opens the audit viewer:
it lists the invitation and the policy change, and its badge says the chain verifies. Every
page is watched: no CSP violation, no script error. The main pages are saved under
docs/screenshots/admin-*.png (the audit log also at phone width).
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kanvaro.identity.sessions.policy import NEVER
from tests.browser import CHROMIUM_ARGS, ServedApp, Watch, chromium_or_skip, served_app
from tests.conftest import PASSWORD, TenantFixture, unique_email
from tests.identity.sessions.conftest import set_policy

BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion
SHOTS = Path(__file__).resolve().parents[4] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ENROLLMENT_REQUIRED = "mfa-enrollment-required"


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory) -> Iterator[ServedApp]:
    chromium_or_skip()
    with served_app(settings, tmp_path_factory.mktemp("admin-journey")) as running:
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


async def shot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await tab.screenshot(path=str(SHOTS / f"admin-{name}.png"), full_page=True)


def outbox_to(settings: Any, address: str) -> list[email.message.EmailMessage]:
    folder = Path(settings.data_dir) / "outbox"
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in str(message["To"]):
            found.append(message)
    return found


async def test_the_admin_invites_enforces_mfa_and_audits(
    chromium: Any, served: ServedApp, tenant: TenantFixture, settings: Any
):
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    member = await tenant.member("team_member")
    projects = await tenant.client.get("/api/v1/projects", headers=member.headers)
    assert projects.status_code == 200  # a full session before the policy changes
    watch = Watch()
    context = await chromium.new_context(viewport=DESKTOP)
    context.set_default_timeout(BOUND_MS)
    tab = await context.new_page()
    watch.attach(tab)
    base = f"{served.origin}/t/{tenant.slug}"

    # Sign in through the console's own form and open the administration.
    await tab.goto(f"{base}/sign-in")
    await tab.fill("#email", tenant.admin.email)
    await tab.fill("#password", PASSWORD)
    await tab.click("button[type=submit]")
    await tab.wait_for_url(f"{base}/")
    await tab.click('nav[aria-label="Main"] a:text-is("Admin")')
    await tab.wait_for_url(f"{base}/admin")
    await tab.wait_for_selector('a:text-is("Users and invitations")')
    await shot(tab, "index")

    # Invite a user by email and role.
    invited = unique_email("invited")
    await tab.click('.admin-sections a:text-is("Users and invitations")')
    await tab.wait_for_url(f"{base}/admin/users")
    await tab.fill("#invite-email", invited)
    await tab.fill("#invite-first", "Ines")
    await tab.fill("#invite-last", "Vited")
    await tab.select_option("#invite-role", "team_member")
    await tab.click('button:text-is("Send invitation")')
    await tab.wait_for_selector('p.notice:text("Invitation sent.")')
    await tab.wait_for_selector(f'.admin-list li:has-text("{invited}")')
    assert outbox_to(settings, invited), "the invitation mail is not in the outbox"
    listed = await tenant.client.get(
        "/api/v1/users", params={"q": invited}, headers=tenant.admin.headers
    )
    assert listed.json()["items"][0]["invitationPending"] is True
    await shot(tab, "users")

    # A custom role in the editor.
    await tab.goto(f"{base}/admin/roles/new")
    await tab.fill("#role-name", "Reviewer")
    await tab.fill("#role-description", "Reads projects and tasks, comments.")
    for p in ("project-read", "task-read", "comment-create", "comment-read"):
        await tab.check(f"#perm-{p}")
    await tab.click('button:text-is("Create role")')
    await tab.wait_for_selector('p.notice:text("Role created.")')
    await shot(tab, "roles-editor")

    # Require MFA for team members.
    await tab.goto(f"{base}/admin/policies")
    await tab.check('input[name="enforceForRoles"][value="team_member"]')
    await tab.click('button:text-is("Save MFA policy")')
    await tab.wait_for_selector('p.notice:text("MFA policy saved")')
    assert await tab.is_checked('input[name="enforceForRoles"][value="team_member"]')
    await shot(tab, "policies")
    # The member's next sign-in asks for MFA: an enrollment-only session, nothing else.
    login = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": member.email, "password": PASSWORD, "tenant": tenant.slug},
    )
    assert login.status_code == 200, login.text
    fresh = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    refused = await tenant.client.get("/api/v1/projects", headers=fresh)
    assert refused.status_code == 403 and refused.json()["type"].endswith(ENROLLMENT_REQUIRED)
    # ... and the console's own sign-in form does not land such a session on the home page.
    second = await chromium.new_context(viewport=DESKTOP)
    other = await second.new_page()
    answer = await other.request.post(
        f"{base}/sign-in",
        form={"email": member.email, "password": PASSWORD},
        headers={"Origin": served.origin},
        max_redirects=0,
    )
    assert answer.status == 303
    await second.close()

    # The audit viewer lists these events and the chain verifies.
    await tab.goto(f"{base}/admin/audit")
    await tab.wait_for_selector("#chain-badge")
    assert (await tab.text_content("#chain-badge")) == "Chain verifies"
    text = await tab.text_content("table.admin-audit")
    assert "api:invitation:create" in text and "api:mfa_policy:update" in text
    assert "api:role:create" in text
    await shot(tab, "audit")
    await tab.click("table.admin-audit a >> nth=0")
    await tab.wait_for_selector("pre.admin-json")

    # Keys and compliance (a report generated through the form).
    await tab.goto(f"{base}/admin/keys")
    await tab.wait_for_selector("h1:text-is('Encryption keys')")
    await shot(tab, "keys")
    await tab.goto(f"{base}/admin/compliance")
    await tab.select_option("#r-type", "gdpr")
    await tab.fill("#r-start", "2026-01-01")
    await tab.fill("#r-end", date.today().isoformat())
    await tab.click('button:text-is("Generate report")')
    await tab.wait_for_selector("p.notice")
    await tab.wait_for_selector('a:text-is("PDF")')
    await shot(tab, "compliance")

    # The audit log at phone width.
    await tab.set_viewport_size(PHONE)
    await tab.goto(f"{base}/admin/audit")
    await tab.wait_for_selector("#chain-badge")
    await shot(tab, "audit-phone")
    watch.assert_clean()
    await context.close()

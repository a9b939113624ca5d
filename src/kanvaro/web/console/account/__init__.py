"""Console pages: account. Each module here has a ``router``; ``routers`` lists them.

* ``profile.py``   ``/t/{slug}/account``: profile, password change, data export
* ``security.py``  ``/t/{slug}/account/security``: second factors, TOTP with its QR code,
  passkeys (script), backup codes shown once
* ``sessions.py``  ``/t/{slug}/account/sessions``: sessions and devices, revoke, log out
  everywhere
"""

from __future__ import annotations

from fastapi import APIRouter

from kanvaro.web.console.account import profile, security, sessions

routers: list[APIRouter] = [profile.router, security.router, sessions.router]

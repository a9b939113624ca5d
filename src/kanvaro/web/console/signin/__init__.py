"""Console pages: signin. Each module here has a ``router``; ``routers`` lists them.

* ``mfa.py``        ``/t/{slug}/sign-in/mfa``: the second step, a form per method (and the
  WebAuthn step's two JSON routes for its script)
* ``password.py``   ``/t/{slug}/password/forgot`` and ``/password-reset`` (the mail's link)
* ``invitation.py`` ``/invitation``: choosing the password of an invited account
"""

from __future__ import annotations

from fastapi import APIRouter

from kanvaro.web.console.signin import invitation, mfa, password

routers: list[APIRouter] = [mfa.router, password.router, invitation.router]

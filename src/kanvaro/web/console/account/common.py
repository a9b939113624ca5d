"""What the account pages share: running an action so that a refusal undoes the request's
changes before the page is rendered again, and the redirect after a form that worked."""

from __future__ import annotations

from typing import TypeVar

from kanvaro.web.console.actions import attempt as attempt
from kanvaro.web.console.actions import redirect as redirect

T = TypeVar("T")

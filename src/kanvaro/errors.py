"""Domain errors: a status, a title and a safe detail, raised by actions anywhere (no web
framework here). ``kanvaro.problems`` renders them as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error with a status, a short title and a safe detail for the client."""

    status = 400
    title = "Bad Request"
    type_suffix = "bad-request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ProblemError):
    pass


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"
    type_suffix = "unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="kanvaro"'})
        super().__init__(detail, **kw)


class ReauthRequired(Unauthorized):
    """A sensitive permission needs a recent authentication: ``POST /api/v1/auth/reauth``."""

    type_suffix = "reauth-required"


class MfaRequired(Unauthorized):
    type_suffix = "mfa-required"


class SignInRefused(Unauthorized):
    type_suffix = "sign-in-refused"


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"
    type_suffix = "forbidden"


class MfaEnrollmentRequired(Forbidden):
    """A session that may only enroll a second factor (the policy requires one)."""

    type_suffix = "mfa-enrollment-required"


class NotFound(ProblemError):
    status = 404
    title = "Not Found"
    type_suffix = "not-found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"
    type_suffix = "conflict"


class PreconditionFailed(ProblemError):
    status = 412
    title = "Precondition Failed"
    type_suffix = "precondition-failed"


class PreconditionRequired(ProblemError):
    status = 428
    title = "Precondition Required"
    type_suffix = "precondition-required"


class Unprocessable(ProblemError):
    status = 422
    title = "Unprocessable Content"
    type_suffix = "validation"


class TooManyRequests(ProblemError):
    status = 429
    title = "Too Many Requests"
    type_suffix = "rate-limited"


class ServiceUnavailable(ProblemError):
    status = 503
    title = "Service Unavailable"
    type_suffix = "unavailable"


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


# One problem type per kind: a status without its own kind gets the same URI wherever it is
# raised (``/problems/not-found``, never ``/problems/404`` beside it).
TYPE_SUFFIXES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation",
    428: "precondition-required",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}
TITLES.update(
    {412: "Precondition Failed", 428: "Precondition Required", 503: "Service Unavailable"}
)

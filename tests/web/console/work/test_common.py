"""The work pages' shared helpers: amounts typed in a currency's units, and refusals."""

from __future__ import annotations

import pytest

from kanvaro.errors import PreconditionFailed, Unprocessable
from kanvaro.web.console.work.common import (
    STALE,
    amount_text,
    integer,
    money,
    problem_of,
    to_minor,
)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "USD", 1250),
        ("1,234.5", "EUR", 123450),
        ("500", "JPY", 500),
        ("1.234", "BHD", 1234),
        ("-3", "USD", -300),
        ("", "USD", None),
    ],
)
def test_amounts_follow_the_currency_exponent(text: str, currency: str, minor: int | None):
    assert to_minor(text, currency, field="amountMinor") == minor


@pytest.mark.parametrize(
    "text", ["1.005", "ten", "1e3x", "NaN", "Infinity", "1e999999", "-1e999999", "1" + "0" * 18]
)
def test_an_amount_that_is_no_amount_names_its_field(text: str):
    with pytest.raises(Unprocessable) as refused:
        to_minor(text, "USD", field="amountMinor")
    assert refused.value.errors[0]["field"] == "amountMinor"
    with pytest.raises(Unprocessable):
        to_minor("1.5", "JPY", field="amountMinor")


def test_shown_amounts():
    assert money(123456, "USD") == "1,234.56 USD"
    assert money(5, "JPY") == "5 JPY"
    assert money(None, "USD") == "—"
    assert amount_text(123456, "USD") == "1234.56" and amount_text(None, "USD") == ""


def test_form_integers_go_to_the_schema_as_json_would_carry_them():
    assert integer("3") == 3 and integer(" ") is None and integer("3.0") == "3.0"


def test_a_stale_version_reads_as_someone_elses_change():
    problem = problem_of(PreconditionFailed("The resource is at version 4", currentVersion=4))
    assert problem.status == 412 and problem.detail == STALE
    fields = problem_of(
        Unprocessable("x", errors=[{"field": "endDate", "in": "body", "message": "too early"}])
    )
    assert fields.fields == {"endDate": "too early"}

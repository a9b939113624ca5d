"""Every console template keeps the strict CSP possible: no inline script, no event-handler
attribute, no inline style, no ``javascript:`` address; and every form that changes something
carries the CSRF field."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from kanvaro.web.console.templating import template_names

_TEMPLATES = Path(str(resources.files("kanvaro.web.console") / "templates"))
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTR = re.compile(r"\sstyle\s*=", re.I)
STYLE_TAG = re.compile(r"<style\b", re.I)
JS_URL = re.compile(r"javascript:", re.I)
POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", re.I | re.S)
PUBLIC_FORMS = re.compile(r"action=\"/t/\{\{ ?tenant\.slug ?\}\}/(sign-in|password|invitation)")


@pytest.mark.parametrize("name", template_names())
def test_template_has_no_inline_code(name: str):
    text = (_TEMPLATES / name).read_text()
    assert not INLINE_SCRIPT.search(text), name
    assert not HANDLER.search(text), name
    assert not STYLE_ATTR.search(text) and not STYLE_TAG.search(text), name
    assert not JS_URL.search(text), name


@pytest.mark.parametrize("name", template_names())
def test_every_post_form_of_a_signed_in_page_carries_the_token(name: str):
    text = (_TEMPLATES / name).read_text()
    for match in POST_FORM.finditer(text):
        tag = text[match.start() : match.start() + 300]
        if PUBLIC_FORMS.search(tag) or "data-public-form" in tag:
            continue  # signing in, resetting a password, accepting an invitation: no session
        assert 'name="csrf_token"' in match.group(1), (name, tag[:120])

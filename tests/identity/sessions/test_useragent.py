"""User-Agent parsing (ua-parser): real browsers' strings, and junk that must never raise."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kanvaro.identity.sessions import useragent
from kanvaro.identity.sessions.useragent import Agent

CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
FIREFOX_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
)
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
CHROME_ON_PIXEL = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36"
)
SAFE_NAME = re.compile(r"^[A-Za-z0-9 ._+\-]+$")


def test_chrome_on_macos():
    agent = useragent.parse(CHROME_ON_MAC)
    assert agent == Agent(
        user_agent=CHROME_ON_MAC,
        browser="Chrome 120",
        os="macOS 10.15.7",
        device="Mac",
        name="Chrome 120 on macOS",
    )
    assert agent.to_json() == {
        "userAgent": CHROME_ON_MAC,
        "browser": "Chrome 120",
        "os": "macOS 10.15.7",
        "device": "Mac",
        "name": "Chrome 120 on macOS",
    }


def test_firefox_on_windows():
    agent = useragent.parse(FIREFOX_ON_WINDOWS)
    assert (agent.browser, agent.os, agent.name) == (
        "Firefox 121",
        "Windows 10",
        "Firefox 121 on Windows",
    )


def test_phones_name_their_device_family():
    iphone = useragent.parse(SAFARI_ON_IPHONE)
    assert (iphone.browser, iphone.os, iphone.device) == ("Mobile Safari 17", "iOS 17.1", "iPhone")
    pixel = useragent.parse(CHROME_ON_PIXEL)
    assert (pixel.browser, pixel.os, pixel.device) == ("Chrome Mobile 120", "Android 14", "Pixel 8")
    assert pixel.name == "Chrome Mobile 120 on Android"


def test_a_tool_without_an_os_is_named_by_its_family():
    agent = useragent.parse("curl/8.4.0")
    assert (agent.browser, agent.os, agent.device, agent.name) == ("curl 8", None, None, "curl 8")


def test_nothing_to_parse_is_an_unknown_device():
    for empty in (None, "", "   ", "\t\r\n"):
        assert useragent.parse(empty) == Agent("")
    assert useragent.parse("zz").name == "Unknown device"


def test_only_the_first_512_characters_are_kept_and_parsed():
    long = CHROME_ON_MAC + " " + "x" * 10_000
    agent = useragent.parse(long)
    assert len(agent.user_agent) == useragent.MAX_LENGTH
    assert agent.browser == "Chrome 120"


def test_a_name_cannot_carry_a_link_or_a_line_break_into_a_mail():
    """The name goes into the "new sign-in" mail; the header is the signer-in's to choose."""
    agent = useragent.parse("Visit https://evil.example/reset?now=1\r\nBcc: x@evil.example/2.0")
    assert "\n" not in agent.user_agent and "\r" not in agent.user_agent
    for part in (agent.browser, agent.os, agent.device, agent.name):
        assert part is None or (SAFE_NAME.match(part) and "://" not in part and "/" not in part)
    assert len(useragent.parse("A" * 300 + "/1.0").name) <= 40 + len(" 1")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=700))
def test_junk_never_raises_and_stays_bounded(header):
    agent = useragent.parse(header)
    assert len(agent.user_agent) <= useragent.MAX_LENGTH
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in agent.user_agent)
    assert SAFE_NAME.match(agent.name) and len(agent.name) <= useragent.NAME_LENGTH

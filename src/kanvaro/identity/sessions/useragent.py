"""The User-Agent header, parsed with ua-parser (the uap-core rules) into what a person can
recognise: browser and major version, operating system and version, device family, and a
short name ("Chrome 120 on macOS") for device lists and sign-in mails.

The header is the client's to choose, so it is treated as hostile: only its first
``MAX_LENGTH`` characters are parsed (the matcher's cost grows with the input), a parser
failure gives an empty result instead of an error, and the names derived from it keep only
letters, digits and a few separators, short. They end up in mails ("a new sign-in on ..."),
where a User-Agent of the attacker's choosing must not be able to write a sentence or a link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import structlog
import ua_parser

log = structlog.get_logger("kanvaro.identity")

MAX_LENGTH = 512  # what is stored and parsed of the header
_PART_LENGTH = 40  # of each derived name (browser, OS, device)
NAME_LENGTH = 100  # trusted_devices.device_name
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._+\-]")
_SPACES = re.compile(r"[\s\x00-\x1f\x7f]+")  # control characters count as space
# uap-core's names where the vendor's own differ.
_OS_NAMES = {"Mac OS X": "macOS"}


@dataclass(frozen=True)
class Agent:
    user_agent: str
    browser: str | None = None  # family and major version: "Chrome 120"
    os: str | None = None  # family and version: "macOS 10.15.7"
    device: str | None = None  # device family: "iPhone", "Pixel 8", "Mac"
    name: str = "Unknown device"  # "Chrome 120 on macOS"

    def to_json(self) -> dict[str, Any]:
        return {"userAgent": self.user_agent, "browser": self.browser, "os": self.os,
                "device": self.device, "name": self.name}  # fmt: skip


def parse(user_agent: str | None) -> Agent:
    """The parsed header; an absent, empty or unparseable one gives an Agent with no parts."""
    raw = _SPACES.sub(" ", (user_agent or "")[:MAX_LENGTH]).strip()
    if not raw:
        return Agent("")
    try:
        result = ua_parser.parse(raw)
    except Exception as exc:  # a parser bug must not fail a sign-in
        log.warning("user_agent_unparsed", error_type=type(exc).__name__)
        return Agent(raw)
    browser_family = _family(result.user_agent)
    os_family = _family(result.os)
    if os_family is not None:
        os_family = _OS_NAMES.get(os_family, os_family)
    browser = _with_version(browser_family, _version(result.user_agent, parts=1))
    os = _with_version(os_family, _version(result.os, parts=3))
    device = _family(result.device)
    return Agent(
        user_agent=raw,
        browser=browser,
        os=os,
        device=device,
        name=_name(browser, os_family, device),
    )


def _family(part: Any) -> str | None:
    """A family name made safe, or None for absent and uap-core's "Other"."""
    family = getattr(part, "family", None)
    if not family or family == "Other":
        return None
    return _clean(family)


def _version(part: Any, *, parts: int) -> str | None:
    numbers = [getattr(part, n, None) for n in ("major", "minor", "patch")[:parts]]
    taken: list[str] = []
    for number in numbers:
        if not number or not str(number).isdigit():
            break
        taken.append(str(number)[:8])
    return ".".join(taken) or None


def _with_version(family: str | None, version: str | None) -> str | None:
    if family is None:
        return None
    return f"{family} {version}" if version else family


def _name(browser: str | None, os_family: str | None, device: str | None) -> str:
    if browser and os_family:
        name = f"{browser} on {os_family}"
    else:
        name = browser or os_family or device or "Unknown device"
    return name[:NAME_LENGTH]


def _clean(text: str) -> str | None:
    cleaned = _SPACES.sub(" ", _UNSAFE.sub("", text)).strip()[:_PART_LENGTH].strip()
    return cleaned or None


def warm() -> None:
    """Load and compile the parser's rules now (~0.1-0.2 s, once per process) instead of
    during the first sign-in."""
    ua_parser.parse("Mozilla/5.0")

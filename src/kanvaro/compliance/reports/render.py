"""A stored report as a readable document: HTML (Jinja2, autoescaped) with SVG charts
(pygal), and PDF made from that HTML (WeasyPrint).

Charts are ``<img>`` data URIs, not inline SVG: an image cannot run script; pygal's default
JavaScript (fetched from a CDN) is switched off and its configuration script removed. WeasyPrint gets a URL fetcher that
fetches data URIs only, so a report never makes the server fetch anything.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import jinja2
import pygal
from pygal.etree import etree  # lxml when installed, else the standard library's

_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)

_TEMPLATE = _ENV.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ data.title }}</title>
<style>
body { font-family: sans-serif; font-size: 10pt; margin: 2em; color: #222; }
h1 { font-size: 16pt; } h2 { font-size: 13pt; border-bottom: 1px solid #999; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; text-align: left; }
th { background: #f2f2f2; } .key { font-weight: bold; } img.chart { width: 16cm; }
pre { white-space: pre-wrap; font-size: 8pt; }
</style></head><body>
<h1>{{ data.title }}</h1>
<table>
<tr><th>Period</th><td>{{ data.period.start }} to {{ data.period.end }}</td></tr>
<tr><th>Tenant</th><td>{{ data.tenantId }}</td></tr>
<tr><th>Generated</th><td>{{ data.generatedAt }}</td></tr>
<tr><th>Report digest (SHA-256)</th><td>{{ data.reportDigest }}</td></tr>
<tr><th>Audit chain</th><td>{{ chain }}</td></tr>
</table>
{% for chart in charts %}
<h2>{{ chart.title }}</h2><img class="chart" alt="{{ chart.title }}" src="{{ chart.uri }}">
{% endfor %}
{% for name, value in data.figures.items() %}
<h2>{{ name }}</h2>{{ render(value) }}
{% endfor %}
<h2>Evidence</h2>{{ render(data.evidence) }}
</body></html>
"""
)


def _cell(value: Any, depth: int = 0) -> str:
    """Nested figures as nested tables; every string is escaped."""
    esc = jinja2.utils.markupsafe.escape
    if isinstance(value, dict):
        if not value:
            return "—"
        rows = "".join(
            f'<tr><td class="key">{esc(k)}</td><td>{_cell(v, depth + 1)}</td></tr>'
            for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if not value:
            return "none"
        if all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{esc(k)}</th>" for k in keys)
            body = "".join(
                "<tr>" + "".join(f"<td>{_cell(v.get(k), depth + 1)}</td>" for k in keys) + "</tr>"
                for v in value
            )
            return f"<table><tr>{head}</tr>{body}</table>"
        return esc(", ".join(str(v) for v in value))
    if value is None:
        return "—"
    text = str(value)
    if "\n" in text:  # a signed checkpoint note: keep its lines
        return f"<pre>{esc(text)}</pre>"
    return str(esc(text))


def _uri(chart: Any) -> str:
    """The chart as an SVG data URI, without pygal's (inert here) configuration script."""
    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if str(child.tag).endswith("script"):
                parent.remove(child)
    svg = b"<?xml version='1.0' encoding='utf-8'?>\n" + etree.tostring(tree)
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def _config(title: str) -> pygal.Config:
    config = pygal.Config()
    config.js = []  # no script from a CDN (pygal's default)
    config.disable_xml_declaration = False
    config.title = title
    config.width, config.height = 800, 360
    config.show_legend = True
    return config


def _walk(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, Any]]:
    found = []
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("byDay", "mfaByRole", "byRole") and isinstance(child, dict) and child:
                found.append((path, key, child))
            else:
                found += _walk(child, (*path, key))
    return found


def charts(figures: dict[str, Any]) -> list[dict[str, str]]:
    """MFA coverage by role and activity over time, wherever the figures hold them."""
    out = []
    seen_roles = False
    for path, key, data in _walk(figures):
        label = " / ".join(path) or "figures"
        if key in ("mfaByRole", "byRole"):
            if seen_roles:
                continue
            seen_roles = True
            title = "MFA coverage by role (active users)"
            chart = pygal.Bar(_config(title))
            chart.x_labels = list(data)
            chart.add("users", [row["users"] for row in data.values()])
            chart.add("with MFA", [row["withMfa"] for row in data.values()])
        else:
            title = f"{label}: entries per day"
            chart = pygal.Bar(_config(title))
            chart.x_labels = list(data)
            chart.x_label_rotation = 30
            chart.add(label, list(data.values()))
        out.append({"title": title, "uri": _uri(chart)})
    return out


def html(data: dict[str, Any]) -> str:
    verification = (data.get("evidence") or {}).get("verification") or {}
    chain = (
        f"intact, {verification.get('entries')} entries"
        if verification.get("ok")
        else f"BROKEN: {verification.get('message')}"
    )
    return _TEMPLATE.render(
        data=data, charts=charts(data.get("figures") or {}), chain=chain,
        render=lambda v: jinja2.utils.markupsafe.Markup(_cell(v)),
    )  # fmt: skip


def _pdf(document: str) -> bytes:
    import weasyprint  # heavy (Pango): loaded on the first PDF only
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False, timeout=1)
    return weasyprint.HTML(string=document, url_fetcher=fetcher).write_pdf()


async def pdf(data: dict[str, Any]) -> bytes:
    """The HTML document as PDF, made in a worker thread (it takes tenths of a second)."""
    return await asyncio.to_thread(_pdf, html(data))

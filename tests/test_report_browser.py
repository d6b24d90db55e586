"""The HTML report in a real headless Chromium: it renders, draws its charts, logs no errors,
asks for nothing over the network, and shows a model's ``<script>`` answer as text.

Needs Debian's ``chromium`` and ``websocket-client``; skipped cleanly without them.
Screenshots go to ``test-artifacts/``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from reports import write_html
from reports.browser import check_report, find_chromium

try:
    from conftest_reports import XSS, make_results
except ImportError:  # tests/ made a package
    from tests.conftest_reports import XSS, make_results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("websocket") is None,
                       reason="websocket-client is not installed (pip install websocket-client)"),
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _assert_clean(page, html_path: Path) -> None:
    assert page.requests and page.requests[0] == html_path.resolve().as_uri(), "the page load itself was seen"
    assert page.external_requests == []
    assert page.errors == []
    assert page.dialogs == []
    assert page.scripts == 0


def test_report_in_chromium(tmp_path):
    results = make_results(tmp_path)
    path = write_html(results, tmp_path)
    page = check_report(path, screenshot=ARTIFACTS / "report.png")
    _assert_clean(page, path)
    assert page.charts == page.charts_drawn == 6
    assert XSS in page.text, "the model's <script> answer shows as text"
    assert "Fine-tune the model" in page.text and "$5.25 a month" in page.text
    assert page.title == "advise: ticket-routing"
    assert page.page_width <= 1280, "nothing overflows the page sideways"
    assert page.screenshot.stat().st_size > 10_000


def test_interrupted_report_on_a_phone(tmp_path):
    results = make_results(tmp_path, interrupted=True)
    path = write_html(results, tmp_path)
    page = check_report(path, screenshot=ARTIFACTS / "report-interrupted-narrow.png", width=390, height=800)
    _assert_clean(page, path)
    assert page.charts == page.charts_drawn == 6
    assert "interrupted" in page.text
    assert page.page_width <= 390, "wide tables scroll inside their box, not the page"


def test_the_checker_sees_scripts_requests_and_dialogs(tmp_path):
    """A control: a page that misbehaves is caught, so a clean report means something."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>bad</p><img src="http://127.0.0.1:9/pixel.png">'
                   '<script>console.error("boom"); alert(1); undefined_function();</script></body></html>')
    page = check_report(bad)
    assert any(u.startswith("http://127.0.0.1:9/") for u in page.external_requests)
    assert page.dialogs == ["1"]
    assert any("boom" in e for e in page.errors) and any("undefined_function" in e for e in page.errors)

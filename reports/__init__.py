"""Reports: results.json rendered for the terminal (rich) and as a self-contained HTML file.

The report is built once (:func:`build_report`) and rendered twice (:func:`print_summary`,
:func:`write_html`); :func:`report_json` is the same summary for scripts.
"""
from reports.build import build_report, report_json
from reports.html import render_html, write_html
from reports.terminal import print_summary
from reports.view import Report

__all__ = ["Report", "build_report", "print_summary", "render_html", "report_json", "write_html"]

"""The service in a real headless Chromium: open the runs page, submit the scaffold task
(``advise init``, switched to the tiny model and a few steps) through the form's folder picker,
watch the status change live on the run page and on the runs page (no reload), open the report.
Screenshots go to ``test-artifacts/``; with ``ADVISE_UPDATE_SCREENSHOTS=1`` they also replace
``docs/service-runs.png`` and ``docs/service-run.png``.

Needs Debian's ``chromium`` and ``websocket-client``; skipped cleanly without them.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest_service import ADVISE, env, serve, wait_for
from reports.browser import PageCheck, _collect_events, _screenshot, browser, find_chromium

pytestmark = [
    pytest.mark.service,
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("websocket") is None,
                       reason="websocket-client is not installed (pip install websocket-client)"),
]
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DOCS = Path(__file__).resolve().parents[1] / "docs"
SMALL = {"model: default ": "model: tiny-random ", "device: auto ": "device: cpu  ",
         "max_new_tokens: 24": "max_new_tokens: 6\n  batch_size: 4\n  latency_queries: 2",
         "finetune: {max_steps: 20,": "finetune: {max_steps: 3, max_seq_length: 96,",
         "prompt: {few_shot_k: 3}": "prompt: {few_shot_k: 1}"}


def _scaffold(tmp_path: Path) -> Path:
    proc = subprocess.run([*ADVISE, "init", "my-task"], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    task = tmp_path / "my-task" / "task.yaml"
    text = task.read_text()
    for old, new in SMALL.items():
        assert old in text, old
        text = text.replace(old, new)
    task.write_text(text + "verdict: {bootstrap_samples: 300}\n")
    return task.parent


def _js(tools, expression: str):
    result = tools.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
    if "exceptionDetails" in result:
        raise AssertionError(f"{expression}: {result['exceptionDetails']}")
    return result["result"].get("value")


def _page_problems(tools) -> list[str]:
    tools.pump(0.3)
    check = PageCheck()
    _collect_events(tools.events, check)
    return check.errors + check.dialogs


def _watch(tools, selector: str, until: str, timeout: float) -> list[str]:
    """The texts ``selector`` showed, in order, until it showed ``until``."""
    seen: list[str] = []

    def poll():
        tools.pump(0.2)
        text = _js(tools, f"(document.querySelector({selector!r}) || {{}}).textContent || ''").strip()
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        return text in (until, "failed", "cancelled")

    wait_for(poll, timeout, f"{selector} to show {until}", every=0.1)
    return seen


def test_submit_the_scaffold_through_the_form_and_watch_it_live(tmp_path):
    t0 = time.monotonic()
    mark = lambda what: print(f"{time.monotonic() - t0:6.1f} s {what}", flush=True)  # noqa: E731
    folder = _scaffold(tmp_path)
    with serve(tmp_path / "data") as url, browser(width=1280, height=900) as open_page:
        runs = open_page(url + "/")
        mark("browser and server up")
        assert _js(runs, "document.title") == "advise: runs"
        _js(runs, "window.__noReload = 'runs'")
        form = open_page(url + "/")
        doc = form.call("DOM.getDocument")
        node = form.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#folder")
        form.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(folder)])
        listing = "[...document.querySelector('#folder').files].map(f => f.webkitRelativePath).sort()"
        picked = wait_for(lambda: form.pump(0.2) or _js(form, listing), 10, "the folder picker to list the files")
        assert "my-task/task.yaml" in picked and "my-task/data/train.jsonl" in picked, picked
        _js(form, "document.querySelector('#submit-form').elements.tune.checked = false")
        _js(form, "document.querySelector('#submit-button').click()")
        wait_for(lambda: "/runs/" in _js(form, "location.pathname"), 30, "the run page")
        form.pump(2, until="Page.loadEventFired")
        _js(form, "window.__noReload = 'run'")
        run_id = int(_js(form, "document.body.dataset.run"))
        mark("submitted")

        statuses = _watch(form, "#status", "complete", 240)
        assert statuses[-1] == "complete", statuses
        mark("complete")
        assert "running" in statuses, f"the page showed the run while it ran: {statuses}"
        assert _js(form, "window.__noReload") == "run", "the run page updated without reloading"
        wait_for(lambda: _js(form, "document.querySelector('#report').getAttribute('src') || ''"), 20,
                 "the report to be embedded")
        assert _js(form, "document.querySelectorAll('#bars .bar.done').length") >= 5
        assert _js(form, "document.querySelector('#verdict').hidden") is False
        headline = _js(form, "document.querySelector('#verdict .headline').textContent")
        assert headline
        time.sleep(1.0)
        _screenshot(form, SHOTS / "service-run.png", 1280, min(int(_js(form, "document.body.scrollHeight")), 2600))
        assert _page_problems(form) == []
        mark("run page checked")

        row = f"#run-{run_id} [data-f=status] .badge"
        wait_for(lambda: _js(runs, f"(document.querySelector({row!r}) || {{}}).textContent") == "complete", 20,
                 "the runs page to show the run complete")
        mark("runs page shows it")
        assert _js(runs, "window.__noReload") == "runs", "the runs page updated without reloading"
        assert _js(runs, f"document.querySelector('#run-{run_id} [data-f=headline]').textContent") == headline
        runs.call("Page.bringToFront")  # a background tab draws no frames to capture
        _screenshot(runs, SHOTS / "service-runs.png", 1280, 640)
        assert _page_problems(runs) == []
        mark("runs page checked")

        form.call("Page.navigate", url=f"{url}/api/runs/{run_id}/report")
        form.pump(20, until="Page.loadEventFired")
        assert _js(form, "document.title") == "advise: my-task"
        assert headline.split(":")[0] in _js(form, "document.body.innerText")
    for shot in ("service-runs.png", "service-run.png"):
        assert (SHOTS / shot).stat().st_size > 20_000
        if os.environ.get("ADVISE_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(SHOTS / shot, DOCS / shot)

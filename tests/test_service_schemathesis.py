"""Schemathesis against the OpenAPI document a real ``advise serve`` serves: every operation, with
generated (valid and invalid) inputs, never answers with a 5xx.

Schemathesis runs as its own command line (``schemathesis run``), the way a CI job would run it;
its pytest plugin's lazy loader does not work with pytest 9 (``Function`` has no ``_nodeid``).
The server runs without a local worker (``--workers 0``), so runs the fuzzing queues or re-runs are
never executed; run 1 exists (a valid task, queued), so generated requests also reach the code
behind an existing run. The two event streams are left out: they stream for as long as a run is
alive (test_service_api.py reads them).
"""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import requests

from conftest import write_task
from conftest_service import env, serve, submit_zip

pytestmark = pytest.mark.service
pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    with serve(root / "data", "--workers", "0") as url:
        seeded = submit_zip(url, write_task(root / "task").parent)
        assert seeded.status_code == 201 and seeded.json()["id"] == 1
        yield url


def test_no_operation_answers_with_a_server_error(api_url, tmp_path):
    junit = tmp_path / "schemathesis.xml"
    proc = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", api_url + "/api/openapi.json",
                           "--checks", "not_a_server_error", "--max-examples", "30", "--seed", "1",
                           "--exclude-path-regex", "events$", "--request-timeout", "30", "--workers", "1",
                           "--suppress-health-check", "all", "--report", "junit", "--report-junit-path", str(junit)],
                          env={**env(), "NO_COLOR": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    tested = {c.get("name") for c in cases}
    assert len(tested) >= 12, tested  # every operation but the two streams
    assert any("POST /api/runs" == t.strip() or t.strip().startswith("POST /api/runs") for t in tested), tested


def test_the_openapi_document_describes_the_api(api_url):
    doc = requests.get(api_url + "/api/openapi.json", timeout=10).json()
    paths = doc["paths"]
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/cancel", "/api/runs/{run_id}/rerun",
            "/api/runs/{run_id}/events", "/api/runs/{run_id}/report", "/api/runs/{run_id}/results",
            "/api/runs/{run_id}/trials", "/api/runs/{run_id}/adapters/{name}.zip"} <= set(paths)
    assert "multipart/form-data" in paths["/api/runs"]["post"]["requestBody"]["content"]
    assert "422" in paths["/api/runs"]["post"]["responses"]

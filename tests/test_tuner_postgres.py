"""Two `advise tune` workers on one study in a real PostgreSQL server: no trial lost or duplicated.

Each run gets its own schema (dropped afterwards), so runs never see each other's tables.
The server is ``ADVISE_TEST_POSTGRES`` or ``postgresql://postgres@127.0.0.1:5432/test``; the
test is skipped when it cannot be reached.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from urllib.parse import quote

import optuna
import pytest

from foundation.results import load_results
from tuner.storage import driver_url
from test_tuner_study import write_task

pytestmark = pytest.mark.postgres
SERVER = os.environ.get("ADVISE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TUNE = """\
  methods: [lora, ia3]
  n_trials: 20
  max_steps: 2
  eval_every: 2
  max_seq_length: 48
  latency_queries: 1
  search:
    batch_size: {choices: [4]}
    epochs: {choices: [1.0]}
"""


@pytest.fixture
def schema_url():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(SERVER, connect_timeout=3)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable at {SERVER}: {str(e).strip().splitlines()[0]}")
    conn.autocommit = True
    schema = f"advise_test_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in SERVER else "?"
    try:
        yield f"{SERVER}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


def test_two_workers_share_one_study_without_losing_or_duplicating_trials(tmp_path, schema_url):
    # Two machines: each has its own copy of the task and its own run directory.
    tasks = [write_task(tmp_path / f"machine{i}", name="shared-sweep", tune=TUNE) for i in (1, 2)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "commands.cli", "tune", str(t), "--storage", schema_url,
                                 "--n-trials", "2", "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for t in tasks]
    outputs = [w.communicate(timeout=540) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err.decode()[-3000:]

    study = optuna.load_study(study_name="shared-sweep", storage=driver_url(schema_url))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    per_worker = Counter(t.user_attrs["worker"] for t in trials)
    assert sorted(per_worker.values()) == [2, 2]  # each worker ran its own two
    assert len({t._trial_id for t in trials}) == 4
    for t in tasks:  # each worker's results.json lists the whole study as it stood when it finished
        summary = load_results(t.parent / "runs" / "shared-sweep").study
        numbers = [x.number for x in summary.trials]
        assert len(numbers) == len(set(numbers)) >= 2
        assert "***" not in summary.storage or "@" in schema_url
    final = max((load_results(t.parent / "runs" / "shared-sweep").study for t in tasks), key=lambda s: len(s.trials))
    assert len(final.trials) == 4

"""The report's appendix for engineers."""
from __future__ import annotations

from typing import Any

from foundation.results import Results
from reports.format import cut_text
from reports.view import Appendix


def _flat(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(d, (list, tuple)):
        return [(prefix, ", ".join(str(x) for x in d))]
    return [(prefix, "–" if d is None else str(d))]


def appendix(results: Results, metric: str) -> Appendix:
    """For engineers: config, data formats and leakage, versions, seeds, timings, the rule."""
    import yaml

    from foundation.metrics import METRICS

    data = dict(results.data or {})
    formats = data.pop("formats", {}) or {}
    sizes = data.pop("sizes", {}) or {}
    leakage = data.pop("leakage", None)
    leak_count = leak_examples = None
    if isinstance(leakage, dict):
        leak_count = leakage.get("train_eval_duplicates")
        leak_examples = tuple(cut_text(x) for x in leakage.get("examples", []) or [])
    seeds = [("task seed", str(results.task.get("seed", "–")))]
    seeds += [(f"environment: {k}", v) for k, v in _flat(results.environment) if "seed" in k.lower()]
    if results.study is not None:
        seeds.append(("study sampler", results.study.sampler))
    timings = tuple((k, float(v)) for k, v in results.timings.items())
    m = METRICS.get(metric)
    return Appendix(
        task_yaml=yaml.safe_dump(results.task, sort_keys=False, allow_unicode=True, default_flow_style=False),
        data_formats=tuple((str(k), str(v)) for k, v in formats.items()),
        data_sizes=tuple((str(k), int(v)) for k, v in sizes.items()),
        leakage_count=leak_count, leakage_examples=leak_examples or (),
        data_other=tuple(_flat(data)),
        environment=tuple(_flat(results.environment)),
        seeds=tuple(seeds),
        timings=timings, total_seconds=sum(v for _, v in timings),
        rule=results.verdict.rule if results.verdict else "",
        metric=metric, metric_description=m.description if m else "",
        schema_version=results.schema_version, advise_version=results.advise_version, created=results.created,
    )

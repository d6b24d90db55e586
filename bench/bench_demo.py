"""Demo end to end: wall time of ``advise run <task.yaml>`` and of each stage.

The task folder is copied to a temporary folder first, so every run starts cold (no reused RAG
index or adapter) and nothing is written into the repository. Stage times come from
``timings`` in ``runs/<name>/results.json``; the reference is the wall time of the whole
command measured here, so ``unaccounted`` (process start, imports, rendering the report) and
the share of each stage are reported too.

Default task: ``examples/manual-qa/task.yaml`` (the README demo) when it exists, else the scaffold written
by ``advise init``.

    python bench/bench_demo.py [--task path/to/task.yaml] [--no-tune]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine_line, print_table, quiet_libraries, write_result

NAME = "demo"
DEFAULT_TASK = ROOT / "examples" / "manual-qa" / "task.yaml"  # what scripts/demo.sh runs


def advise_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "advise"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "commands.cli"]


def watch(proc, results_path: Path, t0: float, timeout: float) -> dict:
    """Poll results.json while ``advise run`` works: the time (s since start) each candidate and the
    verdict first appear. The pipeline saves results.json after every baseline, so this gives the
    stage boundaries even when ``timings`` in results.json is incomplete."""
    seen: dict[str, float] = {}
    timed_out = False
    while proc.poll() is None:
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            timed_out = True
            break
        try:
            data = json.loads(results_path.read_text())
        except (OSError, ValueError):
            data = None
        if data:
            now = time.perf_counter() - t0
            for c in data.get("candidates", []):
                seen.setdefault(c.get("baseline") or c["name"].split("-")[0], now)
            if data.get("verdict"):
                seen.setdefault("verdict", now)
        time.sleep(0.25)
    return seen, timed_out


def stages_from_watch(seen: dict, reported: dict) -> dict:
    """Stage durations from the appearance times: each baseline runs from the previous boundary."""
    start = reported.get("load_data", 0.0) + reported.get("load_model", 0.0)
    out, prev = {}, None
    for name, at in sorted(seen.items(), key=lambda kv: kv[1]):
        if name == "verdict":
            continue
        out[name] = at - (seen[prev] if prev else start)
        prev = name
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", type=Path, default=None, help="task.yaml to run (default: the demo task)")
    ap.add_argument("--no-tune", action="store_true", help="pass --no-tune (stop after the verdict)")
    ap.add_argument("--scaffold", action="store_true", help="run the `advise init` scaffold instead of the demo task")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--note", action="append", default=[], help="extra note stored in the result file")
    ap.add_argument("--keep", type=Path, default=None, help="copy the run folder (results, report.html) here")
    args = ap.parse_args(argv)
    quiet_libraries()

    work = Path(tempfile.mkdtemp(prefix="advise-bench-demo-"))
    try:
        if not args.scaffold and (args.task is not None or DEFAULT_TASK.exists()):
            src = (args.task or DEFAULT_TASK).resolve()
            shutil.copytree(src.parent, work / src.parent.name,
                            ignore=shutil.ignore_patterns("runs", "__pycache__", ".advise*"))
            task_file = work / src.parent.name / src.name
            origin = str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else str(src)
        else:
            subprocess.run([*advise_cmd(), "init", str(work / "scaffold")], check=True, capture_output=True)
            task_file = work / "scaffold" / "task.yaml"
            origin = "advise init scaffold"
        from advisor.tasks import load_task

        task = load_task(task_file)
        cmd = [*advise_cmd(), "run", str(task_file), "--quiet"] + (["--no-tune"] if args.no_tune else [])
        print(f"  running: advise run {origin}{' --no-tune' if args.no_tune else ''} (copied to {work})")
        results_path = task.run_dir / "results.json"
        t0 = time.perf_counter()
        log_out, log_err = work / "stdout.txt", work / "stderr.txt"
        with log_out.open("w") as fo, log_err.open("w") as fe:  # files, not pipes: a full pipe would block the run
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, cwd=task_file.parent)
            seen, timed_out = watch(proc, results_path, t0, args.timeout)
            proc.wait()
        wall = time.perf_counter() - t0
        out, err = log_out.read_text(errors="replace"), log_err.read_text(errors="replace")
        if timed_out or proc.returncode != 0 or not results_path.exists():
            tail = (err or out or "")[-2000:]
            why = f"timed out after {args.timeout:.0f} s" if timed_out else f"exit {proc.returncode}"
            write_result(NAME, figures={"wall_seconds": wall, "returncode": proc.returncode,
                                        "candidate_appearance_seconds": seen,
                                        "stages_observed_from_outside": stages_from_watch(seen, {})},
                         parameters={"task": origin, "no_tune": args.no_tune}, status=f"failed: {why}",
                         notes=[f"advise run {why}: {tail}", *args.note])
            print(f"demo — advise run {why}; stages seen: {seen}")
            return {"name": NAME, "headline": f"advise run {why}", "target": "—", "status": "failed"}
        results = json.loads(results_path.read_text())
        if args.keep:
            shutil.copytree(task.run_dir, args.keep, dirs_exist_ok=True)
        reported = {k: float(v) for k, v in results.get("timings", {}).items()}
        observed = stages_from_watch(seen, reported)
        # Stage times from results.json when it has them; else the ones observed from outside.
        timings = dict(reported)
        missing = [k for k in observed if k not in reported]
        for k in missing:
            timings[k] = observed[k]
        staged = sum(timings.values())
        verdict = results.get("verdict") or {}
        data = results.get("data", {}).get("sizes", {})
        figures = {
            "wall_seconds": wall,
            "stages_seconds": timings,
            "stages_reported_in_results_json": reported,
            "stages_observed_from_outside": observed,
            "candidate_appearance_seconds": seen,
            "stages_share": {k: v / wall for k, v in timings.items()},
            "staged_seconds": staged,
            "unaccounted_seconds": wall - staged,
            "ratio_staged_to_wall": staged / wall if wall else None,
            "status": results.get("status"),
            "verdict": verdict.get("winner") or verdict.get("recommendation") or verdict.get("choice"),
            "candidates": [c.get("name") for c in results.get("candidates", [])],
            # what each measured, to compare runs: quality with its interval, steps trained, latency
            "candidate_figures": {c.get("name"): {
                "quality": (c.get("quality") or {}).get("mean"), "ci_low": (c.get("quality") or {}).get("ci_low"),
                "ci_high": (c.get("quality") or {}).get("ci_high"), "latency_p50_ms": (c.get("latency") or {}).get("p50_ms"),
                "latency_n": (c.get("latency") or {}).get("n"), "one_off_seconds": c.get("one_off_seconds"),
                "steps": (c.get("details") or {}).get("steps"),
                "curve": ((c.get("details") or {}).get("learning_curve") or {}).get("validation"),
                "curve_stopped": ((c.get("details") or {}).get("learning_curve") or {}).get("stopped"),
            } for c in results.get("candidates", [])},
            "data_sizes": data,
        }
        params = {"task": origin, "command": "advise run <task.yaml> --quiet" + (" --no-tune" if args.no_tune else ""),
                  "model": task.model, "embedder": task.embedder, "device": task.device}
        notes = []
        if missing:
            notes.append(f"results.json `timings` lacks {', '.join(missing)}: those stage times were observed from "
                         "outside (when each baseline's candidates appeared in results.json, polled every 0.25 s); the first "
                         "of them also holds the process start-up and imports")
        write_result(NAME, figures=figures, parameters=params, target=None, notes=notes + args.note)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ndemo — {machine_line()}")
    rows = [(f"stage {k}", f"{v:.1f} s ({v / wall:.0%})") for k, v in timings.items()]
    rows += [("unaccounted (start-up, imports, report)", f"{wall - staged:.1f} s ({(wall - staged) / wall:.0%})"),
             ("wall time of advise run", f"{wall:.1f} s")]
    print_table(rows, header=("stage", "seconds"))
    slowest = max(timings, key=timings.get) if timings else "—"
    return {"name": NAME, "headline": f"{wall:.0f} s wall ({origin}); slowest stage {slowest} "
                                      f"{timings.get(slowest, 0):.0f} s", "target": "—", "status": "measured"}


if __name__ == "__main__":
    main()

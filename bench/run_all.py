"""Run every benchmark (each in its own process, so one crash or memory spike does not take the
others down) and print one summary table. Each benchmark writes ``bench/results/<name>.json``.

    python bench/run_all.py [--only training generation ...] [--skip demo ...]

Set ``BENCH_THREADS=1`` on a shared, busy CPU (see ``bench/common.py``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULTS_DIR, machine_line, print_table  # noqa: E402

BENCHMARKS = ["training", "pilot", "preference", "grpo", "generation", "retrieval", "sweep", "cuda", "demo", "endpoint"]

_RUNNER = """
import json, sys
sys.path.insert(0, {here!r})
import bench_{name} as b
summary = b.main([])
print("__SUMMARY__" + json.dumps(summary))
"""


def run_one(name: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-u", "-c", _RUNNER.format(here=str(HERE), name=name)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
    summary = None
    for line in proc.stdout:
        if line.startswith("__SUMMARY__"):
            summary = json.loads(line[len("__SUMMARY__"):])
        else:
            print(line, end="", flush=True)
    proc.wait()
    seconds = time.perf_counter() - t0
    if summary is None:
        summary = {"name": name, "headline": f"crashed (exit {proc.returncode})", "target": "—", "status": "error"}
    summary["seconds"] = seconds
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS)
    ap.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[])
    args = ap.parse_args(argv)
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    summaries = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        summaries.append(run_one(name))
    print(f"\nbenchmarks — {machine_line()}")
    print_table([(s["name"], s["headline"], s["target"], s["status"], f"{s['seconds']:.0f} s") for s in summaries],
                header=("benchmark", "result", "target", "status", "took"))
    (RESULTS_DIR / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    return 1 if any(s["status"] == "error" for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())

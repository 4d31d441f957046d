"""Mean ± sd over seeds of every hits@1 figure in `edmem demo` summary.json files.

Usage: python benchmarks/demo_seeds_summary.py [--json OUT] RUN/summary.json ...
Prints a table (percent) and writes the figures as JSON: {figure: {"mean", "sd", "values"}}.
The sd is the sample standard deviation (n - 1); with one run it is 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def hits_at_1(summary: dict) -> dict[str, float]:
    """Every hits@1 of one summary, keyed ``<where>/<system>[/<group>]``, plus the margin and
    the run's CPU and wall seconds."""
    out = {"test/edmem/all": summary["test"]["hits@1"]}
    for name, row in summary.get("baselines", {}).items():
        out[f"test/{name}/all"] = row["hits@1"]
    for split, systems in summary.get("groups", {}).items():
        for system, groups in systems.items():
            for group, row in groups.items():
                out[f"{split}/{system}/{group}"] = row["hits@1"]
    out["margin_hits@1 (held-out facts)"] = summary["margin_hits@1"]
    out["cpu_seconds"] = summary["cpu_seconds"]["total"]
    out["wall_seconds"] = summary["seconds"]["total"]
    return out


def aggregate(summaries: list[dict]) -> dict[str, dict]:
    """``{figure: {"mean", "sd", "values"}}`` over the figures every summary has."""
    per_run = [hits_at_1(s) for s in summaries]
    keys = [k for k in per_run[0] if all(k in r for r in per_run)]
    out = {}
    for k in keys:
        values = [r[k] for r in per_run]
        out[k] = {"mean": statistics.fmean(values),
                  "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_seeds_summary", description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        summaries = [json.loads(p.read_text(encoding="utf-8")) for p in args.summaries]
    except (OSError, ValueError) as exc:
        print(f"demo_seeds_summary: error: {exc}", file=sys.stderr)
        return 1
    figures = aggregate(summaries)
    print(f"{len(summaries)} runs: {' '.join(str(p) for p in args.summaries)}")
    for k, v in figures.items():
        scale, unit = (1, "s") if k.endswith("seconds") else (100, "")
        print(f"  {k:<50} {scale * v['mean']:7.1f}{unit} ± {scale * v['sd']:5.1f}   "
              f"[{', '.join(f'{scale * x:.1f}' for x in v['values'])}]")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

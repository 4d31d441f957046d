"""Long fuzzing run: ``python benchmarks/fuzz.py --minutes N`` feeds random malformed variants of
every input kind (``tests/fuzz_harness.py``) to the real commands until the time is up and prints
one JSON summary: cases per target, how many ended in success / a clean error, and every contract
violation found (its first line, with the offending input saved under ``--findings``).

Run it at low priority beside other work: ``nice -n 19 python benchmarks/fuzz.py --minutes 10``.
``make test`` runs the same targets a bounded, repeatable number of times (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

# examples per target and round, by cost: cheap targets get more cases per round
# (Hypothesis starts each call with its simplest example, so a call needs several examples to
# explore; repeats are counted apart as "distinct")
PER_ROUND = {"cheap": 60, "serve": 40, "linker": 20, "model": 6, "fit": 6, "train": 3}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to fuzz (default 1)")
    parser.add_argument("--targets", nargs="+", default=None,
                        help="input kinds to fuzz (default: all; see tests/fuzz_harness.py)")
    parser.add_argument("--findings", default="runs/fuzz-findings",
                        help="where inputs that broke the contract are saved")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from hypothesis import HealthCheck, Phase, given, settings

    import fuzz_harness

    torch.set_num_threads(args.threads)
    table = fuzz_harness.targets()
    names = args.targets or sorted(table)
    unknown = [name for name in names if name not in table]
    if unknown:
        print(f"fuzz.py: error: unknown target(s) {unknown}; choose from {sorted(table)}", file=sys.stderr)
        return 2
    findings_dir = Path(args.findings)
    root = Path(tempfile.mkdtemp(prefix="edmem-fuzz-"))
    started = time.monotonic()
    deadline = started + args.minutes * 60
    findings: list[dict[str, str]] = []
    rounds = 0
    try:
        workspace = fuzz_harness.Workspace.build(root)
        while time.monotonic() < deadline:
            rounds += 1
            for name in names:
                if time.monotonic() >= deadline:
                    break
                target = table[name]
                last: dict[str, bytes] = {}

                @settings(max_examples=PER_ROUND[target.cost], deadline=None, database=None,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(data=target.strategy(workspace))
                def run(data: bytes) -> None:
                    last["data"] = data
                    target.check(workspace, data)

                try:
                    run()
                except fuzz_harness.ContractViolation as exc:
                    findings.append(save_finding(findings_dir, name, exc, last.get("data", b"")))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    cases = {name: dict(table[name].tally) for name in names}
    total = sum(sum(tally.values()) for tally in cases.values())
    distinct = {name: len(table[name].distinct) for name in names}
    print(json.dumps({"minutes": round(elapsed / 60, 2), "rounds": rounds, "cases": total,
                      "distinct_inputs": sum(distinct.values()), "distinct_per_target": distinct,
                      "cases_per_second": round(total / elapsed, 2), "violations": len(findings),
                      "per_target": cases, "findings": findings}, indent=1))
    return 1 if findings else 0


def save_finding(directory: Path, target: str, exc: BaseException, data: bytes) -> dict[str, str]:
    """Keep the input that broke the contract, named by its hash, and describe it in one line."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{target}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return {"target": target, "input": str(path), "what": str(exc).splitlines()[0]}


if __name__ == "__main__":
    raise SystemExit(main())

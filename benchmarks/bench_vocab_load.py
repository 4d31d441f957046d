"""Load time and memory of a 1,000,010-entry entity vocabulary (``entid2entityitemid`` format).

Generates a synthetic file in a temporary directory (names and Wikidata ids of realistic length),
then loads it with ``edmem.data.entity_vocab.load_id2entity`` and prints wall seconds, the RSS
growth (current and peak) and the bytes the loaded table keeps. Run:
``.venv/bin/python benchmarks/bench_vocab_load.py [N]``.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edmem.data.entity_vocab import load_id2entity  # noqa: E402


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_vocab(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("{")
        for i in range(n):
            name = f"[reserved_{i}]" if i < 10 else f"Entity number {i} (disambiguation)"
            entry = {"entity": name, "wikidata_id": f"Q{i * 7 + 3}"}
            handle.write(("," if i else "") + json.dumps(str(i)) + ":" + json.dumps(entry))
        handle.write("}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_010
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "entid2entityitemid_1M.json"
        write_vocab(path, n)
        size_mb = path.stat().st_size / 2**20
        gc.collect()
        before, peak_before = rss_mb(), peak_mb()
        start = time.perf_counter()
        names = load_id2entity(path)
        seconds = time.perf_counter() - start
        gc.collect()
        after = rss_mb()
        assert len(names) == n and names[n - 1].startswith("Entity number")
        print(f"entries {n:,}  file {size_mb:.1f} MiB  load {seconds:.2f} s  "
              f"RSS +{after - before:.1f} MiB after load  peak +{max(0.0, peak_mb() - peak_before):.1f} MiB  "
              f"table {names.nbytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

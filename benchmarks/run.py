"""`make bench`: speed and memory figures of every stage, written to one JSON file.

Each section is a module `benchmarks/bench_<section>.py` exposing `run(ctx: BenchContext) -> dict`. The demo
section runs first and generates the large portal (20,000 companies, about 10 million usage events) that the
other sections read. `--only SECTION` reruns one section and merges its figures into the existing JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SECTIONS = ("demo", "validate", "panel", "model", "hubspot")
HERE = Path(__file__).resolve().parent


@dataclass
class BenchContext:
    """Shared state of one bench run: a scratch folder and the large portal once generated."""

    workdir: Path
    big_companies: int = 20_000
    big_snapshot: Path | None = None
    notes: dict = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="reports/bench.json")
    parser.add_argument("--workdir", default="data/bench")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--companies", type=int, default=20_000, help="size of the large portal")
    args = parser.parse_args(argv)

    out = Path(args.out)
    figures = json.loads(out.read_text()) if out.exists() and args.only else {}
    ctx = BenchContext(workdir=Path(args.workdir), big_companies=args.companies)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    existing = ctx.workdir / f"portal-{args.companies}"
    if existing.is_dir():
        ctx.big_snapshot = existing
    sys.path.insert(0, str(HERE))
    for section in args.only or SECTIONS:
        try:
            module = importlib.import_module(f"bench_{section}")
        except ModuleNotFoundError:
            print(f"[bench] {section}: no benchmarks/bench_{section}.py yet, skipped", flush=True)
            continue
        print(f"[bench] {section} ...", flush=True)
        started = time.perf_counter()
        figures[section] = module.run(ctx)
        print(f"[bench] {section} done in {time.perf_counter() - started:.1f} s", flush=True)
    figures["machine"] = {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"[bench] figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

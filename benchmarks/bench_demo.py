"""Demo portal: time and peak memory of generating and writing 3,000 and the large (20,000) company portal."""

from __future__ import annotations

import shutil
from pathlib import Path

from peak import measure

from hsutils.demo import truth_folder


def generate_and_write(out: str, companies: int, seed: int = 7) -> dict:
    """Generate and write one portal (run in a child process by `measure`); return the rows per table."""
    import polars as pl

    from hsutils.demo import write_demo

    path = write_demo(out, companies=companies, seed=seed)
    rows = {p.stem: pl.scan_parquet(p).select(pl.len()).collect().item() for p in sorted(path.glob("*.parquet"))}
    truth = pl.read_parquet(truth_folder(path) / "renewals.parquet")
    annual = truth.filter(pl.col("term") == "annual")
    return {
        "rows": rows,
        "renewal_decisions": truth.height,
        "churn_rate_annual": round(float(annual["churned"].mean()), 4) if annual.height else None,
        "churn_rate_monthly": round(float(truth.filter(pl.col("term") == "monthly")["churned"].mean()), 4),
    }


def _fresh(path: Path) -> None:
    for p in (path, truth_folder(path)):
        if p.exists():
            shutil.rmtree(p)


def _size_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def _one(out: Path, companies: int) -> dict:
    _fresh(out)  # always regenerate, so the time is measured
    figures = measure(generate_and_write, str(out), companies)
    result = figures.pop("result")
    return {
        "companies": companies,
        "seconds": round(figures["seconds"], 2),
        "peak_memory_mb": figures["peak_memory_mb"],
        "size_on_disk_mb": _size_mb(out),
        **result,
    }


def run(ctx) -> dict:
    """Time generate+write at 3,000 companies and at ctx.big_companies; leave the big portal for later sections."""
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    small_out = ctx.workdir / "portal-3000"
    small = _one(small_out, 3000)
    _fresh(small_out)
    big_out = ctx.workdir / f"portal-{ctx.big_companies}"
    big = _one(big_out, ctx.big_companies)
    ctx.big_snapshot = big_out
    return {"default_3000": small, f"large_{ctx.big_companies}": big}

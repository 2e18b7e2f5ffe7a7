"""Model: fit + held-out evaluation with 200 bootstraps on the large (20,000-company) panel (target: 30 s or less).

The panel is built once (its time belongs to the panel section) and cached as parquet in the bench folder. Then,
each in a fresh child process: fitting the HealthScore alone on the training rows, and the whole comparison
(`evaluate.compare_models`: fitted score, both presets, logistic and boosting baselines, metrics overall and per
segment with 200 bootstrap resamples each), which is what `hsutils fit` spends after the panel.
"""

from __future__ import annotations

import time
from pathlib import Path

from peak import measure


def build_panel_file(snapshot: str, out: str) -> dict:
    """Build the weekly panel of a snapshot and write it as parquet (child process)."""
    from hsutils.panel import build_panel
    from hsutils.snapshot import load_snapshot

    panel = build_panel(load_snapshot(snapshot))
    panel.write_parquet(out)
    return {"rows": panel.height, "labelled_rows": int(panel["outcome_churned"].is_not_null().sum())}


def fit_only(panel_path: str) -> dict:
    """Time-split the panel and fit the HealthScore on the training rows."""
    import polars as pl

    from hsutils import evaluate
    from hsutils.model import HealthScore

    panel = pl.read_parquet(panel_path)
    train, _, _ = evaluate.time_split(panel)
    started = time.perf_counter()
    model = evaluate.fit_scorer(HealthScore(), train, evaluate.panel_signals(panel))
    return {
        "train_rows": int(train["outcome_churned"].is_not_null().sum()),
        "fit_seconds": round(time.perf_counter() - started, 2),
        "points": {k: v for k, v in model.points_.items() if v > 0},
    }


def fit_and_evaluate(panel_path: str) -> dict:
    """The full comparison with 200 bootstraps; returns the overall AUC per model."""
    import polars as pl

    from hsutils import evaluate

    panel = pl.read_parquet(panel_path)
    started = time.perf_counter()
    comparison = evaluate.compare_models(panel, n_boot=200, seed=0)
    seconds = time.perf_counter() - started
    overall = comparison.table[comparison.table["segment"] == evaluate.SEGMENT_ALL]
    return {
        "compare_seconds": round(seconds, 2),
        "train_rows": comparison.train_rows,
        "test_rows": comparison.test_rows,
        "auc": {row["model"]: round(float(row["auc"]), 4) for _, row in overall.iterrows()},
        "auc_interval": {
            row["model"]: [round(float(row["auc_low"]), 4), round(float(row["auc_high"]), 4)]
            for _, row in overall.iterrows()
        },
    }


def _write_demo(out: str, companies: int) -> None:
    from hsutils.demo import write_demo

    write_demo(out, companies=companies, seed=7)


def run(ctx) -> dict:
    snapshot = ctx.big_snapshot
    if snapshot is None or not Path(snapshot).is_dir():
        snapshot = ctx.workdir / f"portal-{ctx.big_companies}"
        if not snapshot.is_dir():
            measure(_write_demo, str(snapshot), ctx.big_companies)
        ctx.big_snapshot = snapshot
    panel_path = ctx.workdir / f"model-panel-{ctx.big_companies}.parquet"
    panel_info: dict = {}
    manifest = Path(snapshot) / "manifest.json"
    stale = panel_path.exists() and manifest.exists() and manifest.stat().st_mtime > panel_path.stat().st_mtime
    if not panel_path.exists() or stale:
        built = measure(build_panel_file, str(snapshot), str(panel_path))
        panel_info = {**built["result"], "build_seconds": round(built["seconds"], 2)}
    fit = measure(fit_only, str(panel_path))
    full = measure(fit_and_evaluate, str(panel_path))
    return {
        "companies": ctx.big_companies,
        "panel": panel_info or {"cached": str(panel_path)},
        "healthscore_fit": {**fit["result"], "seconds": round(fit["seconds"], 2),
                            "peak_memory_mb": fit["peak_memory_mb"]},
        "fit_evaluate_200_bootstraps": {
            **full["result"],
            "seconds": round(full["seconds"], 2),
            "peak_memory_mb": full["peak_memory_mb"],
            "target_seconds": 30,
            "within_target": full["seconds"] <= 30,
        },
    }

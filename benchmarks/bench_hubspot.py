"""HubSpot sync bench: pull and push of a 10,000-company portal through the local stand-in at 190 requests / 10 s.

The stand-in enforces the Professional/Enterprise private-app limit (190 per 10 s, answering 429 beyond it) and
the client runs its own limiter at the same tier. Recorded per phase: requests made against the minimum the
endpoints allow (ceil(N / page size) per list or batch operation, plus the fixed schema reads and writes), and
elapsed time against the rate-limit floor (the least time a sliding 10-second window lets that many requests
through: 10 s x floor((requests - 1) / 190)). Target: elapsed / floor <= 1.2.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from hsutils.hubspot.config import load_config
from hsutils.hubspot.pull import pull
from hsutils.hubspot.push import push
from hsutils.hubspot.sandbox import (
    Sandbox,
    seed_portal,
    write_synthetic_model,
    write_synthetic_scores,
    write_usage_export,
)
from hsutils.schema import TABLES

COMPANIES = 10_000
CONTACTS_PER_COMPANY = 3
ENGAGEMENTS_PER_COMPANY = 4  # two emails, two notes
RATE = 190
SIGNALS = {"core_depth": 35, "eb_engagement": 30, "support_negative_trend": 20, "seat_utilisation": 15}


def synthetic_portal(n: int, seed: int = 1) -> dict[str, pl.DataFrame]:
    """Canonical tables of `n` companies with contacts, one renewal deal, emails, notes and usage each."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    ids = [str(100_000 + i) for i in range(n)]
    tables = {t: pl.DataFrame(schema=spec.polars_schema) for t, spec in TABLES.items()}
    tables["companies"] = pl.DataFrame({
        "company_id": ids, "name": [f"Company {i}" for i in range(n)],
        "created_at": [start - timedelta(days=rng.randint(30, 900)) for _ in ids],
        "tier": [rng.choice(["starter", "pro", "enterprise"]) for _ in ids],
        "employees": [rng.randint(5, 5000) for _ in ids], "industry": ["Software"] * n,
        "cs_owner_id": [str(500 + rng.randint(0, 20)) for _ in ids], "ae_owner_id": [str(600 + rng.randint(0, 10)) for _ in ids],
    }, schema=TABLES["companies"].polars_schema)
    roles = ["economic_buyer", "champion", "user"]
    contacts = [(f"{cid}{k}", cid, roles[k], start) for cid in ids for k in range(CONTACTS_PER_COMPANY)]
    tables["contacts"] = pl.DataFrame(contacts, schema=["contact_id", "company_id", "role", "created_at"],
                                      orient="row").with_columns(job_title=pl.lit(None, pl.String))
    tables["contacts"] = tables["contacts"].cast(TABLES["contacts"].polars_schema)
    tables["deals"] = pl.DataFrame({
        "deal_id": [f"9{c}" for c in ids], "company_id": ids, "deal_type": ["renewal"] * n, "stage": ["won"] * n,
        "term_start": [start] * n, "term_end": [start + timedelta(days=365)] * n,
        "close_date": [start - timedelta(days=10)] * n, "arr": [12_000.0] * n, "seats": [10] * n,
    }, schema=TABLES["deals"].polars_schema)
    rows = []
    for cid in ids:
        for k in range(ENGAGEMENTS_PER_COMPANY):
            kind = "email" if k < 2 else "note"
            rows.append({"engagement_id": f"{cid}{k}", "company_id": cid, "contact_id": f"{cid}{k % 3}",
                         "type": kind, "direction": "outbound", "occurred_at": start + timedelta(days=rng.randint(0, 300)),
                         "opened": (rng.random() < 0.5) if kind == "email" else None,
                         "replied": (rng.random() < 0.2) if kind == "email" else None, "meeting_kind": None})
    tables["engagements"] = pl.DataFrame(rows, schema=TABLES["engagements"].polars_schema)
    tables["usage_events"] = pl.DataFrame({
        "company_id": ids, "user_id": [f"u{c}" for c in ids], "occurred_at": [start + timedelta(days=30)] * n,
        "event": [("report_published", "workflow_run", "login")[i % 3] for i in range(n)], "count": [1] * n,
    }, schema=TABLES["usage_events"].polars_schema)
    return tables


def floor_seconds(requests: int, rate: int = RATE, interval: float = 10.0) -> float:
    """Least time a sliding window of `rate` per `interval` lets `requests` through (instant processing)."""
    return interval * math.floor(max(requests - 1, 0) / rate)


def pull_minimum(tables: dict[str, pl.DataFrame]) -> int:
    pages = lambda n: max(1, math.ceil(n / 100))  # noqa: E731
    engagements = tables["engagements"]
    counts = {
        "companies": tables["companies"].height, "contacts": tables["contacts"].height,
        "deals": tables["deals"].height, "tickets": tables["tickets"].height, "feedback": tables["surveys"].height,
        **{t + "s": engagements.filter(pl.col("type") == t).height for t in ("email", "meeting", "call", "note")},
    }
    lists = sum(pages(n) for n in counts.values())
    assoc = math.ceil(counts["contacts"] / 1000) + math.ceil(counts["deals"] / 1000)
    for name in ("tickets", "feedback", "emails", "meetings", "calls", "notes"):
        assoc += 2 * math.ceil(counts[name] / 1000)  # to companies and to contacts
    owners = pages(len(set(tables["companies"]["cs_owner_id"]) | set(tables["companies"]["ae_owner_id"])))
    owners += 1  # the deactivated owners' list (empty in a stand-in seeded from a snapshot)
    return lists + assoc + owners + 9 + 1 + 1  # + property reads per object type, the label read, the deal pipelines


def run(ctx) -> dict:
    work = Path(ctx.workdir) / "hubspot"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = load_config()
    started = time.perf_counter()
    tables = synthetic_portal(COMPANIES)
    portal = seed_portal(tables, config)
    seed_seconds = time.perf_counter() - started
    usage = write_usage_export(tables["usage_events"], work / "usage.csv")
    sandbox = Sandbox(portal=portal, rate=RATE)
    sandbox.start()
    figures: dict = {"companies": COMPANIES, "rate_per_10s": RATE, "seed_seconds": round(seed_seconds, 1),
                     "rows": {t: f.height for t, f in tables.items()}}
    try:
        t0 = time.perf_counter()
        result = pull(work / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                      rate="pro", progress=False)
        elapsed = time.perf_counter() - t0
        requests = sum(sandbox.counts.values())
        minimum = pull_minimum(tables)
        figures["pull"] = {"requests": requests, "minimum": minimum, "requests_ratio": round(requests / minimum, 3),
                           "seconds": round(elapsed, 1), "floor_seconds": floor_seconds(requests),
                           "time_ratio": round(elapsed / max(floor_seconds(requests), 1e-9), 3),
                           "rate_limited_429": sandbox.fault_counts["rate_limited"], "retries": result.retries}
        time.sleep(10.5)  # let the stand-in's 10-second window empty between the phases
        sandbox.reset_counts()
        ids = tables["companies"].get_column("company_id").to_list()
        write_synthetic_scores(work / "scores.parquet", ids, SIGNALS, seed=2, version="bench-1")
        write_synthetic_model(work / "model.yml", SIGNALS, version="bench-1")
        t0 = time.perf_counter()
        report = push(work / "model.yml", work / "scores.parquet", host=sandbox.url, token=sandbox.token,
                      apply=True, config=config, audit=work / "audit.csv", rate="pro")
        elapsed = time.perf_counter() - t0
        requests = sum(sandbox.counts.values())
        created = sandbox.counts["POST /crm/v3/properties/{type}"]
        minimum = 2 + 1 + created + 2 * math.ceil(COMPANIES / 100)
        figures["push"] = {"requests": requests, "minimum": minimum, "requests_ratio": round(requests / minimum, 3),
                           "seconds": round(elapsed, 1), "floor_seconds": floor_seconds(requests),
                           "time_ratio": round(elapsed / max(floor_seconds(requests), 1e-9), 3),
                           "rate_limited_429": sandbox.fault_counts["rate_limited"], "written": report.written,
                           "failed": len(report.failed)}
    finally:
        sandbox.stop()
    for phase in ("pull", "push"):
        f = figures[phase]
        print(f"[bench] hubspot {phase}: {f['requests']} requests (minimum {f['minimum']}), {f['seconds']} s "
              f"(floor {f['floor_seconds']} s, ratio {f['time_ratio']}), 429s {f['rate_limited_429']}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return figures

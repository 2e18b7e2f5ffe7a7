"""A tiny, valid canonical snapshot (three companies) that tests copy and corrupt one way at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hsutils.schema import SCHEMA_VERSION, TABLES
from hsutils.snapshot import Manifest, write_snapshot

CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
CORE_EVENTS = ["report_published", "workflow_run"]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _frame(table: str, rows: list[dict]) -> pl.DataFrame:
    """Rows -> a frame with the table's canonical columns and dtypes (absent optional values are null)."""
    schema = TABLES[table].polars_schema
    return pl.DataFrame([{name: row.get(name) for name in schema} for row in rows], schema=schema)


def build_manifest(**changes: object) -> Manifest:
    """The manifest of the tiny snapshot, with optional field changes."""
    fields = {
        "schema_version": SCHEMA_VERSION,
        "source": "test-factory",
        "created_at": CREATED_AT,
        "core_events": list(CORE_EVENTS),
        "extra": {"login_event": "login"},
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


def build_tables() -> dict[str, pl.DataFrame]:
    """Seven small canonical tables that pass every check."""
    companies = _frame(
        "companies",
        [
            {
                "company_id": "101",
                "name": "Acme Analytics",
                "created_at": _ts("2023-01-05"),
                "tier": "pro",
                "employees": 120,
                "industry": "software",
                "cs_owner_id": "9001",
                "ae_owner_id": "9101",
            },
            {
                "company_id": "102",
                "name": "Birch, Bell & Co",
                "created_at": _ts("2023-03-10"),
                "tier": "enterprise",
                "employees": None,
                "industry": None,
                "cs_owner_id": "9002",
                "ae_owner_id": None,
            },
            {
                "company_id": "103",
                "name": "Cobalt",
                "created_at": _ts("2024-02-01"),
                "tier": "starter",
                "employees": 8,
                "industry": "retail",
                "cs_owner_id": None,
                "ae_owner_id": "9101",
            },
        ],
    )
    contacts = _frame(
        "contacts",
        [
            {
                "contact_id": "501",
                "company_id": "101",
                "role": "economic_buyer",
                "created_at": _ts("2023-01-06"),
                "job_title": "VP Operations",
            },
            {
                "contact_id": "502",
                "company_id": "101",
                "role": "champion",
                "created_at": _ts("2023-01-06"),
                "job_title": None,
            },
            {
                "contact_id": "503",
                "company_id": "102",
                "role": "economic_buyer",
                "created_at": _ts("2023-03-11"),
                "job_title": "CFO",
            },
            {
                "contact_id": "504",
                "company_id": "103",
                "role": "user",
                "created_at": _ts("2024-02-02"),
                "job_title": "Analyst",
            },
        ],
    )
    deals = _frame(
        "deals",
        [
            {
                "deal_id": "7001",
                "company_id": "101",
                "deal_type": "new",
                "stage": "won",
                "term_start": _ts("2023-01-15"),
                "term_end": _ts("2024-01-15"),
                "close_date": _ts("2023-01-10"),
                "arr": 24000.0,
                "seats": 20,
            },
            {
                "deal_id": "7002",
                "company_id": "101",
                "deal_type": "renewal",
                "stage": "won",
                "term_start": _ts("2024-01-15"),
                "term_end": _ts("2025-01-15"),
                "close_date": _ts("2024-01-05"),
                "arr": 26000.0,
                "seats": 22,
            },
            {
                "deal_id": "7003",
                "company_id": "102",
                "deal_type": "new",
                "stage": "won",
                "term_start": _ts("2023-03-15"),
                "term_end": _ts("2026-03-15"),
                "close_date": _ts("2023-03-12"),
                "arr": 90000.0,
                "seats": 80,
            },
            {
                "deal_id": "7004",
                "company_id": "103",
                "deal_type": "new",
                "stage": "open",
                "term_start": _ts("2026-02-01"),
                "term_end": _ts("2027-02-01"),
                "close_date": None,
                "arr": 3000.0,
                "seats": 3,
            },
        ],
    )
    engagements = _frame(
        "engagements",
        [
            {
                "engagement_id": "e1",
                "company_id": "101",
                "contact_id": "501",
                "type": "email",
                "direction": "outbound",
                "occurred_at": _ts("2025-06-01T09:30:00"),
                "opened": True,
                "replied": False,
            },
            {
                "engagement_id": "e2",
                "company_id": "101",
                "contact_id": "501",
                "type": "meeting",
                "direction": "outbound",
                "occurred_at": _ts("2025-07-01T15:00:00"),
                "meeting_kind": "qbr",
            },
            {
                "engagement_id": "e3",
                "company_id": "102",
                "contact_id": None,
                "type": "call",
                "direction": "inbound",
                "occurred_at": _ts("2025-08-12T11:00:00"),
            },
            {
                "engagement_id": "e4",
                "company_id": "103",
                "contact_id": "504",
                "type": "note",
                "direction": "outbound",
                "occurred_at": _ts("2025-09-03T08:00:00"),
            },
        ],
    )
    tickets = _frame(
        "tickets",
        [
            {
                "ticket_id": "t1",
                "company_id": "101",
                "contact_id": "502",
                "created_at": _ts("2025-05-02T10:00:00"),
                "closed_at": _ts("2025-05-03T10:00:00"),
                "priority": "high",
                "sentiment": "negative",
                "escalated": True,
                "csat": 2,
            },
            {
                "ticket_id": "t2",
                "company_id": "102",
                "contact_id": None,
                "created_at": _ts("2025-06-10T10:00:00"),
                "closed_at": None,
                "priority": "low",
                "sentiment": "neutral",
                "escalated": False,
                "csat": None,
            },
            {
                "ticket_id": "t3",
                "company_id": "103",
                "contact_id": "504",
                "created_at": _ts("2025-07-20T10:00:00"),
                "closed_at": _ts("2025-07-20T12:00:00"),
                "priority": "medium",
                "sentiment": "positive",
                "escalated": False,
                "csat": 5,
            },
        ],
    )
    surveys = _frame(
        "surveys",
        [
            {
                "response_id": "s1",
                "company_id": "101",
                "contact_id": "502",
                "submitted_at": _ts("2025-04-01"),
                "kind": "nps",
                "score": 9.0,
            },
            {
                "response_id": "s2",
                "company_id": "102",
                "contact_id": "503",
                "submitted_at": _ts("2025-04-02"),
                "kind": "nps",
                "score": 0.0,
            },
            {
                "response_id": "s3",
                "company_id": "103",
                "contact_id": None,
                "submitted_at": _ts("2025-04-03"),
                "kind": "csat",
                "score": 4.0,
            },
        ],
    )
    usage = [
        ("101", "u1", "2025-11-01T10:00:00", "login", 1),
        ("101", "u1", "2025-11-01T10:05:00", "report_published", 2),
        ("101", "u2", "2025-11-02T10:00:00", "workflow_run", 5),
        ("102", "u3", "2025-11-03T10:00:00", "login", 1),
        ("102", "u3", "2025-11-03T11:00:00", "dashboard_viewed", 1),
        ("102", "u4", "2025-12-01T10:00:00", "report_published", 1),
        ("103", "u5", "2025-12-15T10:00:00", "login", 1),
        ("103", "u5", "2025-12-31T23:59:59", "workflow_run", 3),
    ]
    usage_events = _frame(
        "usage_events",
        [
            {"company_id": c, "user_id": u, "occurred_at": _ts(t), "event": e, "count": n}
            for c, u, t, e, n in usage
        ],
    )
    return {
        "companies": companies,
        "contacts": contacts,
        "deals": deals,
        "engagements": engagements,
        "tickets": tickets,
        "surveys": surveys,
        "usage_events": usage_events,
    }


def write_tiny_snapshot(
    out: Path,
    fmt: str = "parquet",
    tables: dict[str, pl.DataFrame] | None = None,
    manifest: Manifest | None = None,
) -> Path:
    """Write the tiny snapshot (or a changed copy of its tables / manifest) with `write_snapshot`."""
    return write_snapshot(tables or build_tables(), manifest or build_manifest(), out, fmt=fmt)

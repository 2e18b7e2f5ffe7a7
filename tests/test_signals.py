"""Signal registry and signal values: a hand-made snapshot whose every number is worked out by hand, and the
window helpers against brute force on random data."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import yaml
from own_signals import (
    ROWS_SIGNAL,
    ROWS_SOURCE,
    SIGNAL,
    readme_example,
    signal_registry_restored,
    write_signal_module,
)
from polars.testing import assert_frame_equal

from hsutils import signals
from hsutils.cli import main
from hsutils.errors import InputError
from hsutils.panel import build_panel
from hsutils.schema import TABLES
from hsutils.signals import (
    SIGNALS,
    SignalContext,
    load_signal_modules,
    register_signal,
    resolve_signals,
    signal_table,
    unregister_signal,
)
from hsutils.snapshot import Manifest, Snapshot

VALUE = ["core_depth", "core_depth_trend", "eb_engagement", "eb_days_since_touch", "support_negative_share",
         "support_negative_trend", "seat_utilisation", "days_to_renewal"]
ACTIVITY = ["email_open_rate", "logins_28d", "ticket_volume_90d", "latest_nps", "feature_breadth_28d"]
AS_OF = datetime(2024, 3, 17, tzinfo=UTC)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def frame(table: str, rows: list[dict]) -> pl.DataFrame:
    schema = TABLES[table].polars_schema
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def tiny_tables() -> dict[str, pl.DataFrame]:
    """Company a (customer with an expansion), b (churns: renewal lost 2024-02-20), c (never a customer)."""
    companies = frame("companies", [
        {"company_id": "a", "name": "A", "created_at": ts("2023-01-01"), "tier": "pro", "employees": 120, "cs_owner_id": "o1"},
        {"company_id": "b", "name": "B", "created_at": ts("2023-01-01"), "tier": "starter", "employees": None},
        {"company_id": "c", "name": "C", "created_at": ts("2023-01-01"), "tier": "starter", "employees": 5},
    ])
    contacts = frame("contacts", [
        {"contact_id": "a-eb", "company_id": "a", "role": "economic_buyer", "created_at": ts("2023-01-01")},
        {"contact_id": "a-ch", "company_id": "a", "role": "champion", "created_at": ts("2023-01-01")},
        {"contact_id": "a-eb2", "company_id": "a", "role": "economic_buyer", "created_at": ts("2024-03-10")},
    ])
    deals = frame("deals", [
        {"deal_id": "a1", "company_id": "a", "deal_type": "new", "stage": "won", "term_start": ts("2024-01-01"),
         "term_end": ts("2025-01-01"), "close_date": ts("2023-12-20"), "arr": 12000.0, "seats": 10},
        {"deal_id": "a2", "company_id": "a", "deal_type": "expansion", "stage": "won", "term_start": ts("2024-02-15"),
         "term_end": ts("2025-01-01"), "close_date": ts("2024-02-15"), "arr": 6000.0, "seats": 5},
        # signed after the as-of date: invisible at it
        {"deal_id": "a3", "company_id": "a", "deal_type": "renewal", "stage": "won", "term_start": ts("2025-01-01"),
         "term_end": ts("2026-01-01"), "close_date": ts("2024-03-25"), "arr": 20000.0, "seats": 15},
        {"deal_id": "b1", "company_id": "b", "deal_type": "new", "stage": "won", "term_start": ts("2023-06-01"),
         "term_end": ts("2024-03-01"), "close_date": ts("2023-05-25"), "arr": 3000.0, "seats": 4},
        {"deal_id": "b2", "company_id": "b", "deal_type": "renewal", "stage": "lost", "term_start": ts("2024-03-01"),
         "term_end": ts("2025-03-01"), "close_date": ts("2024-02-20"), "arr": 3000.0, "seats": 4},
    ])
    usage = frame("usage_events", [
        {"company_id": "a", "user_id": "u1", "occurred_at": AS_OF, "event": "report_published", "count": 3},
        {"company_id": "a", "user_id": "u1", "occurred_at": ts("2024-03-10"), "event": "login", "count": 2},
        {"company_id": "a", "user_id": "u2", "occurred_at": ts("2024-02-18") + timedelta(microseconds=1),
         "event": "workflow_run", "count": 1},
        {"company_id": "a", "user_id": "u3", "occurred_at": ts("2024-03-01"), "event": "export", "count": 1},
        {"company_id": "a", "user_id": "u4", "occurred_at": ts("2024-02-18"), "event": "report_published", "count": 5},
        {"company_id": "a", "user_id": "u5", "occurred_at": AS_OF + timedelta(microseconds=1), "event": "login", "count": 1},
    ])
    engagements = frame("engagements", [
        {"engagement_id": "e1", "company_id": "a", "contact_id": "a-eb", "type": "email", "direction": "outbound",
         "occurred_at": ts("2024-03-01"), "opened": True, "replied": True},
        {"engagement_id": "e2", "company_id": "a", "contact_id": "a-eb", "type": "meeting", "direction": "outbound",
         "occurred_at": ts("2024-02-01"), "meeting_kind": "qbr"},
        {"engagement_id": "e3", "company_id": "a", "contact_id": "a-eb", "type": "meeting", "direction": "outbound",
         "occurred_at": ts("2023-12-10"), "meeting_kind": "check_in"},
        {"engagement_id": "e4", "company_id": "a", "contact_id": "a-eb2", "type": "call", "direction": "outbound",
         "occurred_at": ts("2024-03-05")},
        {"engagement_id": "e5", "company_id": "a", "contact_id": "a-eb", "type": "note", "direction": "outbound",
         "occurred_at": ts("2024-03-12")},
        {"engagement_id": "e6", "company_id": "a", "contact_id": "a-ch", "type": "email", "direction": "outbound",
         "occurred_at": ts("2024-03-02"), "opened": False, "replied": False},
        {"engagement_id": "e7", "company_id": "a", "contact_id": "a-ch", "type": "email", "direction": "outbound",
         "occurred_at": ts("2024-03-03"), "opened": None, "replied": None},
    ])
    ticket_rows = [
        ("t1", "2024-03-01", "negative", False), ("t2", "2024-02-01", "neutral", True),
        ("t3", "2024-03-10", "positive", False), ("t4", "2024-01-20", "neutral", False),
        ("t5", "2024-01-10", "negative", False), ("t6", "2023-12-01", "neutral", False),
        ("t7", "2023-11-20", "neutral", False),
    ]
    tickets = frame("tickets", [
        {"ticket_id": t, "company_id": "a", "created_at": ts(d), "priority": "low", "sentiment": s, "escalated": e}
        for t, d, s, e in ticket_rows
    ])
    surveys = frame("surveys", [
        {"response_id": "s1", "company_id": "a", "submitted_at": ts("2024-01-05"), "kind": "nps", "score": 8.0},
        {"response_id": "s2", "company_id": "a", "submitted_at": ts("2024-03-18"), "kind": "nps", "score": 3.0},
        {"response_id": "s3", "company_id": "a", "submitted_at": ts("2024-03-01"), "kind": "csat", "score": 5.0},
    ])
    return {"companies": companies, "contacts": contacts, "deals": deals, "engagements": engagements,
            "tickets": tickets, "surveys": surveys, "usage_events": usage}


def tiny_snapshot(**manifest_extra) -> Snapshot:
    manifest = Manifest(schema_version=1, source="test", created_at=ts("2024-04-01"),
                        core_events=["report_published", "workflow_run"], extra=manifest_extra)
    return Snapshot(manifest=manifest, tables=tiny_tables())


def row(panel: pl.DataFrame, company: str, as_of: datetime) -> dict:
    rows = panel.filter((pl.col("company_id") == company) & (pl.col("as_of") == as_of)).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_registry_matches_the_contract():
    assert [n for n, s in SIGNALS.items() if s.family == "value"][: len(VALUE)] == VALUE
    assert [n for n, s in SIGNALS.items() if s.family == "activity"][: len(ACTIVITY)] == ACTIVITY
    assert [n for n, s in SIGNALS.items() if not s.point_source] == ["days_to_renewal"]
    assert SIGNALS["eb_days_since_touch"].direction == -1 and SIGNALS["core_depth"].direction == 1
    assert all(s.description and s.unit for s in SIGNALS.values())
    table = signal_table()
    assert set(table.columns) >= {"name", "family", "unit", "direction", "point_source", "description"}
    assert resolve_signals("logins_28d, core_depth")[0].name == "logins_28d"
    with pytest.raises(InputError, match="unknown signal"):
        resolve_signals(["core_depth", "logins"])


def test_hand_made_values_at_an_as_of():
    panel = build_panel(tiny_snapshot(), as_of_dates=[AS_OF - timedelta(weeks=4), AS_OF], horizon_days=90)
    a = row(panel, "a", AS_OF)
    assert a["active_seats"] == 3  # u1, u2, u3; u4 sits exactly 28 days back, u5 after as-of
    assert a["core_depth"] == pytest.approx(4 / 3)
    assert a["logins_28d"] == 2
    assert a["feature_breadth_28d"] == 1  # export (logins and the core events are not "features")
    assert a["contracted_seats"] == 15 and a["arr"] == 18000.0
    assert a["seat_utilisation"] == pytest.approx(3 / 15)
    assert a["days_to_renewal"] == pytest.approx((ts("2025-01-01") - AS_OF).days)
    assert a["term_end"] == ts("2025-01-01")
    # weekly core counts, oldest first: 0 0 0 5 1 0 0 3 -> slope 8.5/42, mean 9/8
    assert a["core_depth_trend"] == pytest.approx((8.5 / 42) / (9 / 8))
    assert a["eb_engagement"] == 3  # reply 1 + QBR 2; the call is with a contact created after it
    assert a["eb_days_since_touch"] == pytest.approx(16)
    assert a["email_open_rate"] == pytest.approx(1 / 3)
    assert a["support_negative_share"] == pytest.approx(2 / 4)
    assert a["support_negative_trend"] == pytest.approx(2 / 4 - 1 / 3)
    assert a["ticket_volume_90d"] == 5
    assert a["latest_nps"] == 8
    assert a["tier"] == "pro" and a["size_bucket"] == "50-199" and a["cs_owner_id"] == "o1"
    assert a["outcome_churned"] is None  # no term ends within the horizon
    assert a["outcome_expanded"] is None  # the horizon reaches past the snapshot and no expansion closed


def test_churning_company_and_outcomes():
    early = AS_OF - timedelta(weeks=4)  # 2024-02-18: b's renewal is still open (it closes lost on 02-20)
    panel = build_panel(tiny_snapshot(), as_of_dates=[early - timedelta(weeks=1), early, AS_OF - timedelta(weeks=3)])
    b = row(panel, "b", early)
    assert b["outcome_churned"] == 1 and b["outcome_days_to_churn"] == pytest.approx(2)
    assert b["core_depth"] == 0 and b["active_seats"] == 0 and b["seat_utilisation"] == 0
    assert b["email_open_rate"] is None and b["latest_nps"] is None and b["eb_days_since_touch"] == 365
    assert b["core_depth_trend"] == 0 and b["size_bucket"] == "unknown"
    # after the loss is recorded b is no longer a customer; c never was one
    assert panel.filter(pl.col("company_id") == "b")["as_of"].max() == early
    assert "c" not in panel["company_id"].to_list()
    a = row(panel, "a", early - timedelta(weeks=1))
    assert a["contracted_seats"] == 10 and a["outcome_expanded"] == 1  # expansion closes 2024-02-15
    assert row(panel, "a", early)["contracted_seats"] == 15
    # 2 companies at the early dates: the top 20 % (rounded up) is one company, the larger ARR
    assert row(panel, "a", early)["arr_segment"] == "high_touch" and b["arr_segment"] == "scaled"


def test_trend_is_null_for_short_tenure_and_login_event_from_manifest():
    snapshot = tiny_snapshot(login_event="export")
    panel = build_panel(snapshot, as_of_dates=[ts("2024-02-18")], signals=["core_depth_trend", "logins_28d"])
    a = row(panel, "a", ts("2024-02-18"))
    assert a["core_depth_trend"] is None  # a customer since 2024-01-01: under 8 weeks
    assert a["logins_28d"] == 0  # "export" is the login event now; none in the 28 days before 02-18
    assert row(build_panel(snapshot, as_of_dates=[AS_OF], signals=["logins_28d"]), "a", AS_OF)["logins_28d"] == 1


def test_a_registered_signal_appears_in_the_panel():
    @register_signal("exports_28d", family="value", unit="exports", direction=+1)
    def exports_28d(ctx: SignalContext) -> pl.DataFrame:
        """Exports in the 28 days up to as-of."""
        return ctx.window_sum("usage_events", "occurred_at", pl.col("count"), days=28, where=pl.col("event") == "export")

    @register_signal("users_ever", family="activity", unit="users", direction=0)
    def users_ever(ctx: SignalContext) -> pl.DataFrame:
        return ctx.window_distinct("usage_events", "occurred_at", pl.col("user_id"), days=3650)

    try:
        assert SIGNALS["exports_28d"].description == "Exports in the 28 days up to as-of."
        with pytest.raises(InputError, match="already registered"):
            register_signal("exports_28d", family="value", unit="x", direction=1)(exports_28d)
        panel = build_panel(tiny_snapshot(), as_of_dates=[AS_OF], signals=["exports_28d", "users_ever", "core_depth"])
        a = row(panel, "a", AS_OF)
        assert a["exports_28d"] == 1 and a["users_ever"] == 4 and a["core_depth"] == pytest.approx(4 / 3)
        assert panel.columns[2:5] == ["exports_28d", "users_ever", "core_depth"]
    finally:
        unregister_signal("exports_28d")
        unregister_signal("users_ever")
    with pytest.raises(InputError, match="family"):
        register_signal("x", family="other", unit="x", direction=1)


def test_a_signal_computed_its_own_way_is_matched_to_the_panel_rows_by_key():
    """A signal may return its rows in any order, leave rows out (null), repeat a key (the first value counts) or
    name rows that are not in the panel (ignored); one that misses a column is a one-line error."""

    @register_signal("week_and_company", family="activity", unit="code", direction=0)
    def week_and_company(ctx: SignalContext) -> pl.DataFrame:
        coded = ctx.keys.with_columns((pl.col("k") * 10 + pl.col("cid")).cast(pl.Float64).alias("value"))
        return pl.concat([
            coded.slice(1).reverse(),  # every panel row but the first, backwards
            coded.slice(1, 1).with_columns(pl.lit(-1.0).alias("value")),  # the second row again: ignored
            coded.slice(1, 1).with_columns(pl.lit(99, dtype=pl.UInt32).alias("cid")),  # no such company
        ])

    @register_signal("no_value", family="activity", unit="code", direction=0)
    def no_value(ctx: SignalContext) -> pl.DataFrame:
        return ctx.keys

    dates = [AS_OF - timedelta(weeks=5), AS_OF - timedelta(weeks=4), AS_OF]
    try:
        panel = build_panel(tiny_snapshot(), as_of_dates=dates, signals=["week_and_company", "logins_28d"])
        with pytest.raises(InputError, match=r"signal no_value: .* cid, k, value \(missing value\)"):
            build_panel(tiny_snapshot(), as_of_dates=dates, signals=["no_value"])
    finally:
        unregister_signal("week_and_company")
        unregister_signal("no_value")
    assert panel.height >= 3
    company_code = {c: i for i, c in enumerate(sorted(tiny_snapshot()["companies"]["company_id"]))}
    for i, r in enumerate(panel.iter_rows(named=True)):
        k = (r["as_of"] - AS_OF) // timedelta(weeks=1)
        assert r["week_and_company"] == (None if i == 0 else k * 10 + company_code[r["company_id"]]), r


BAD_COMPUTATIONS = {
    "raises": ("def compute(ctx):\n    return ctx.keys.with_columns(value=1 / 0)\n",
               "its computation failed: ZeroDivisionError: division by zero"),
    "none": ("def compute(ctx):\n    ctx.keys.with_columns(value=1.0)\n", "its computation returned None; it must return a polars DataFrame"),
    "pandas": ("def compute(ctx):\n    return ctx.keys.with_columns(value=1.0).to_pandas()\n",
               "its computation returned pandas.DataFrame; it must return a polars DataFrame"),
    "text": ("def compute(ctx):\n    return ctx.keys.with_columns(value=pl.lit('high'))\n",
             "column value is String, not numbers (e.g. 'high')"),
    "infinite": ("def compute(ctx):\n    return ctx.keys.with_columns(value=1.0 / (pl.col('k') - pl.col('k')))\n",
                 "value(s) are infinite (e.g. a ratio over 0; rows: {cid="),
}


@pytest.mark.parametrize("kind", list(BAD_COMPUTATIONS))
def test_a_signal_whose_computation_fails_or_returns_no_numbers_is_a_one_line_error(kind, small_demo, tmp_path, capsys):
    """A product's own signal that raises, returns no polars frame, text or infinite values: `fit` exits 2 with one
    line naming the signal, writes nothing, and the panel of a signal returning booleans reads them as 0/1."""
    source = f"import polars as pl\nfrom hsutils.signals import register_signal\n\n\n" \
             f"@register_signal('acme_{kind}', family='value', unit='x', direction=0)\n{BAD_COMPUTATIONS[kind][0]}"
    module = write_signal_module(tmp_path, source, name=f"acme_{kind}.py")
    out = tmp_path / "model.yml"
    with signal_registry_restored():
        code = main(["fit", str(small_demo), "--out", str(out), "--signal-module", str(module),
                     "--signals", f"core_depth,acme_{kind}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"hsutils fit: error: signal acme_{kind}: ") and BAD_COMPUTATIONS[kind][1] in err, err
    assert not out.exists()


def test_a_signal_returning_booleans_or_nulls_is_read_as_numbers():
    @register_signal("flag_even", family="activity", unit="flag", direction=0)
    def flag_even(ctx: SignalContext) -> pl.DataFrame:
        return ctx.keys.with_columns(value=pl.col("cid") % 2 == 0)

    @register_signal("never_known", family="activity", unit="x", direction=0)
    def never_known(ctx: SignalContext) -> pl.DataFrame:
        return ctx.keys.with_columns(value=None)

    try:
        panel = build_panel(tiny_snapshot(), as_of_dates=[AS_OF], signals=["flag_even", "never_known"])
    finally:
        unregister_signal("flag_even")
        unregister_signal("never_known")
    assert panel.schema["flag_even"] == pl.Float64 and set(panel["flag_even"].to_list()) <= {0.0, 1.0}
    assert panel.schema["never_known"] == pl.Float64 and panel["never_known"].null_count() == panel.height


@pytest.mark.parametrize(("n_users", "packed"), [(25, True), (90, True), (90, False)])
def test_window_helpers_match_brute_force(n_users, packed, monkeypatch):
    """Few distinct values (bit sets), many (packed integers) and many unpacked (sorted intervals); rows without
    a user count for no user."""
    if not packed:
        monkeypatch.setattr(SignalContext, "_distinct_whole_weeks", lambda *args: None)
    rng = np.random.default_rng(n_users)
    start, n = ts("2023-01-01"), 4000
    offsets = rng.integers(0, 400 * 86_400, n)  # seconds into the year
    offsets[::5] = offsets[::5] // 86_400 * 86_400 + 6 * 3600  # some exactly at the as-of time of day
    times = [start + timedelta(seconds=int(s)) for s in offsets]
    companies = rng.choice(["a", "b", "c"], n)
    users = rng.integers(0, n_users, n)
    counts = rng.integers(1, 5, n)
    tables = tiny_tables()
    tables["usage_events"] = pl.DataFrame({
        "company_id": companies, "user_id": [f"u{u}" if u % 7 else None for u in users], "occurred_at": times,
        "event": ["login"] * n, "count": counts,
    }).cast(TABLES["usage_events"].polars_schema)
    tables["deals"] = frame("deals", [
        {"deal_id": c, "company_id": c, "deal_type": "new", "stage": "won", "term_start": start,
         "term_end": ts("2030-01-01"), "close_date": start, "arr": 1.0, "seats": 1} for c in "abc"
    ])
    snapshot = Snapshot(Manifest(1, "test", ts("2024-04-01"), ["login"]), tables)
    anchor = ts("2024-03-13T06:00:00")  # as-of moments need not be midnight
    weeks = [-30, -29, -12, -3, 0]
    ctx = SignalContext(snapshot, anchor, weeks)
    t = np.array([x.replace(tzinfo=None) for x in times], dtype="datetime64[us]").astype(np.int64)
    grid = ctx.grid.select("company_id", "as_of").to_dicts()
    weekly = ctx.weekly("usage_events", "occurred_at", pl.col("count"), tail_days=(1, 2, 3, 6))  # 18 weeks back
    for days in (1, 10, 28, 30, 45, 90, 7 * 18 + 6):
        sums = ctx.window_sum("usage_events", "occurred_at", pl.col("count"), days=days)["value"].to_list()
        assert weekly.window("value", days).tolist() == sums, days
        distinct = ctx.window_distinct("usage_events", "occurred_at", pl.col("user_id"), days=max(days, 7))["value"].to_list()
        for i, g in enumerate(grid):
            a = int(np.datetime64(g["as_of"].replace(tzinfo=None), "us").astype(np.int64))
            inside = (companies == g["company_id"]) & (t <= a) & (t > a - days * 86_400_000_000)
            assert sums[i] == counts[inside].sum(), (days, g)
            inside7 = (companies == g["company_id"]) & (t <= a) & (t > a - max(days, 7) * 86_400_000_000)
            assert distinct[i] == np.unique(users[inside7 & (users % 7 > 0)]).size, (days, g)
    # weekly totals read only the weeks they hold: none after as-of, none before their lookback
    for days, problem in ((5, "tail_days=\\(5,\\)"), (7 * 19, "19"), (0, "at least one day")):
        with pytest.raises(InputError, match=problem):
            weekly.window("value", days)
    for shift in (-1, 19):
        with pytest.raises(InputError, match=f"not {shift}"):
            weekly.at(shift)


def test_cumulate_sums_deltas_up_to_each_as_of():
    """Running totals of frame[cid, k, delta]: earlier weeks fold into the first as-of, later ones and rows of
    companies outside the panel or without a company, week or delta add nothing."""
    ctx = SignalContext(tiny_snapshot(), AS_OF, [-5, -4, -1, 0])
    rng = np.random.default_rng(3)
    n = 300
    cid = rng.integers(0, 4, n).astype(float)  # code 3 is no company
    cid[::17] = np.nan
    k = rng.integers(-12, 4, n)
    delta = rng.integers(-3, 6, n).astype(float)
    delta[::23] = np.nan
    deltas = pl.DataFrame({"cid": cid, "k": k, "delta": delta}).with_columns(
        pl.col("cid").fill_nan(None).cast(pl.UInt32), pl.col("delta").fill_nan(None))
    totals = ctx.cumulate(deltas)
    for i, g in enumerate(ctx.keys.to_dicts()):
        counted = (cid == g["cid"]) & (k <= g["k"]) & ~np.isnan(delta)
        assert totals[i] == delta[counted].sum(), g


def test_latest_matches_brute_force_with_ties_broken_by_the_tiebreak():
    rng = np.random.default_rng(7)
    start, n = ts("2023-01-01"), 3000
    offsets = rng.integers(0, 400, n) * 86_400 + rng.choice([0, 6 * 3600, 9 * 3600], n)  # many equal times
    times = [start + timedelta(seconds=int(s)) for s in offsets]
    companies = rng.choice(["a", "b", "c"], n)
    kinds = rng.choice(["nps", "csat"], n)
    ids = rng.permutation(n)
    scores = rng.integers(0, 11, n).astype(float)
    tables = tiny_tables()
    tables["surveys"] = pl.DataFrame({
        "response_id": [f"r{i:05d}" for i in ids], "company_id": companies, "contact_id": [None] * n,
        "submitted_at": times, "kind": kinds, "score": scores,
    }).cast(TABLES["surveys"].polars_schema)
    tables["deals"] = frame("deals", [
        {"deal_id": c, "company_id": c, "deal_type": "new", "stage": "won", "term_start": start,
         "term_end": ts("2030-01-01"), "close_date": start, "arr": 1.0, "seats": 1} for c in "abc"
    ])
    snapshot = Snapshot(Manifest(1, "test", ts("2024-04-01"), ["login"]), tables)
    ctx = SignalContext(snapshot, ts("2024-03-13T06:00:00"), [-60, -59, -30, -3, 0])
    found = ctx.latest("surveys", "submitted_at", pl.col("score"), where=pl.col("kind") == "nps", tiebreak="response_id")
    t = np.array([x.replace(tzinfo=None) for x in times], dtype="datetime64[us]")
    for g, value in zip(ctx.grid.select("company_id", "as_of").to_dicts(), found["value"].to_list(), strict=True):
        seen = np.flatnonzero((companies == g["company_id"]) & (kinds == "nps") & (t <= np.datetime64(g["as_of"].replace(tzinfo=None))))
        last = max(seen, key=lambda i: (t[i], ids[i]))  # latest time, then highest response_id
        assert value == scores[last], g
    # without a tiebreak, of rows at the same time the one further down the table counts
    unbroken = ctx.latest("surveys", "submitted_at", pl.col("score"), where=pl.col("kind") == "nps")
    for g, value in zip(ctx.grid.select("company_id", "as_of").to_dicts(), unbroken["value"].to_list(), strict=True):
        seen = np.flatnonzero((companies == g["company_id"]) & (kinds == "nps") & (t <= np.datetime64(g["as_of"].replace(tzinfo=None))))
        assert value == scores[max(seen, key=lambda i: (t[i], i))], g


def test_empty_result_and_missing_core_events_are_input_errors():
    snapshot = tiny_snapshot()
    snapshot.tables["deals"] = snapshot.tables["deals"].filter(pl.col("company_id") == "b")
    with pytest.raises(InputError, match="empty panel"):
        build_panel(snapshot, as_of_dates=[AS_OF])  # b churned on 2024-02-20, nobody else is a customer
    no_core = tiny_snapshot()
    no_core.manifest.core_events = []
    with pytest.raises(InputError, match="core_events is empty"):
        build_panel(no_core, as_of_dates=[AS_OF])
    assert build_panel(no_core, as_of_dates=[AS_OF], signals=["logins_28d"]).height == 1  # no core signal chosen
    unseen = tiny_snapshot()
    unseen.manifest.core_events = ["invoice_sent"]
    with pytest.raises(InputError, match=r"core_events never occur: 'invoice_sent' \(most frequent events: '"):
        build_panel(unseen, as_of_dates=[AS_OF])
    unseen.manifest.core_events = ["export "]  # names are quoted, so a stray space shows
    with pytest.raises(InputError, match=r"core_events never occur: 'export ' \(most frequent events: .*'export'"):
        build_panel(unseen, as_of_dates=[AS_OF])
    # stages an export did not map: no deal is a won new or renewal deal, so nobody is ever a customer
    unmapped = tiny_snapshot()
    unmapped.tables["deals"] = unmapped.tables["deals"].with_columns(pl.lit("closedwon").alias("stage"))
    for dates in (None, [AS_OF]):
        with pytest.raises(InputError, match="no won new or renewal deal with a term"):
            build_panel(unmapped, as_of_dates=dates)
    on_a_day = build_panel(tiny_snapshot(), as_of_dates=[AS_OF.date()], signals=["logins_28d"])  # a date: midnight UTC
    assert on_a_day["as_of"].to_list() == [AS_OF]


def test_usage_signals_run_in_the_background_and_their_errors_reach_the_caller():
    import threading

    threads: dict[str, str] = {}

    @register_signal("seats_seen", family="value", unit="x", direction=1, reads=("tickets",))
    def seats_seen(ctx: SignalContext) -> pl.DataFrame:
        threads["seats_seen"] = threading.current_thread().name
        return ctx.grid.select("cid", "k", pl.col("active_seats").alias("value"))  # waits for the usage encoding

    @register_signal("usage_rows", family="value", unit="x", direction=1, reads=("usage_events",))
    def usage_rows(ctx: SignalContext) -> pl.DataFrame:
        threads["usage_rows"] = threading.current_thread().name
        return ctx.usage_window_sum(28)

    @register_signal("broken_usage", family="value", unit="x", direction=1, reads=("usage_events",))
    def broken_usage(ctx: SignalContext) -> pl.DataFrame:
        raise InputError("signal broken_usage: no such product event")

    try:
        panel = build_panel(tiny_snapshot(), as_of_dates=[AS_OF], signals=["seats_seen", "usage_rows", "logins_28d"])
        a = row(panel, "a", AS_OF)
        assert a["seats_seen"] == a["active_seats"] == 3 and a["usage_rows"] > a["logins_28d"] > 0
        assert threads["seats_seen"] == threading.main_thread().name and threads["usage_rows"] == "hsutils-usage"
        with pytest.raises(InputError, match="no such product event"):
            build_panel(tiny_snapshot(), as_of_dates=[AS_OF], signals=["seats_seen", "broken_usage"])
    finally:
        for name in ("seats_seen", "usage_rows", "broken_usage"):
            unregister_signal(name)


def with_integration_syncs(snapshot: Snapshot) -> Snapshot:
    """The tiny snapshot plus 4 `integration_synced` events of company a the day before AS_OF."""
    snapshot.tables["usage_events"] = pl.concat([snapshot.tables["usage_events"], frame("usage_events", [
        {"company_id": "a", "user_id": "u9", "occurred_at": ts("2024-03-16"), "event": "integration_synced", "count": 4},
    ])])
    return snapshot


def test_the_documented_example_registers_a_working_signal():
    import textwrap

    import hsutils.signals as module

    doc = module.__doc__
    start = doc.index("    import polars as pl\n    from hsutils.signals")
    example = textwrap.dedent(doc[start: doc.index("`build_panel` then carries")])
    assert example.strip() == readme_example().strip()  # the README shows the same example
    try:
        exec(compile(example, "signals-docstring", "exec"), {})
        panel = build_panel(with_integration_syncs(tiny_snapshot()), as_of_dates=[AS_OF], signals=["integrations_synced_28d"])
        assert row(panel, "a", AS_OF)["integrations_synced_28d"] == 4
    finally:
        unregister_signal("integrations_synced_28d")


def test_load_signal_modules_imports_each_module_once_and_names_its_signals(own_signal_module, monkeypatch):
    """The README's example in a file, named relative to the current folder and then by its absolute path: one
    import, so the second load neither registers twice nor raises "already registered"; a dotted module name is
    imported like any module."""
    monkeypatch.chdir(own_signal_module.parent)
    assert load_signal_modules(["my_signals.py"]) == [SIGNAL]
    assert load_signal_modules([own_signal_module, "my_signals.py"]) == [SIGNAL]
    assert SIGNALS[SIGNAL].family == "value" and SIGNALS[SIGNAL].description.startswith("Integration syncs run")
    panel = build_panel(with_integration_syncs(tiny_snapshot()), as_of_dates=[AS_OF], signals=[SIGNAL, "core_depth"])
    assert row(panel, "a", AS_OF)[SIGNAL] == 4
    write_signal_module(own_signal_module.parent, ROWS_SOURCE, name="acme_signals_for_tests.py")
    monkeypatch.syspath_prepend(str(own_signal_module.parent))
    try:
        assert load_signal_modules(["acme_signals_for_tests", "my_signals.py"]) == [ROWS_SIGNAL, SIGNAL]
        assert load_signal_modules(["acme_signals_for_tests"]) == [ROWS_SIGNAL]
    finally:
        sys.modules.pop("acme_signals_for_tests", None)
    assert load_signal_modules([]) == load_signal_modules(None) == []


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (None, "FileNotFoundError: no such file: "),
        ("def broken(:\n", "SyntaxError: "),
        ("import hsutils_no_such_package\n", "ModuleNotFoundError: No module named 'hsutils_no_such_package'"),
        ("RAISES", "RuntimeError: the integrations table is not exported yet"),
    ],
)
def test_a_bad_signal_module_is_a_one_line_error_and_leaves_no_signal(source, error, tmp_path, monkeypatch):
    """A missing file, a syntax error or an exception while importing: `signal module PATH: Type: message`, no
    traceback; signals the module registered before it failed are taken back out, so the fixed file loads."""
    monkeypatch.chdir(tmp_path)
    if source == "RAISES":  # registers its signal, then fails
        source = readme_example() + "\nraise RuntimeError('the integrations table is not exported yet')\n"
    if source is not None:
        write_signal_module(tmp_path, source)
    with signal_registry_restored():
        before = dict(SIGNALS)
        for _ in range(2):  # a failed module is not taken as loaded: the second try fails the same way
            with pytest.raises(InputError) as failure:
                load_signal_modules(["my_signals.py"])
            assert str(failure.value).startswith(f"signal module my_signals.py: {error}")
            assert "\n" not in str(failure.value) and "Traceback" not in str(failure.value)
            assert before == SIGNALS
        write_signal_module(tmp_path)
        assert load_signal_modules(["my_signals.py"]) == [SIGNAL]
    with pytest.raises(InputError, match=r"^signal module acme\.nowhere: ModuleNotFoundError: No module named 'acme'"):
        load_signal_modules(["acme.nowhere"])


def test_the_commands_fit_score_and_evaluate_a_signal_of_a_signal_module(small_demo, own_signal_module, tmp_path,
                                                                        capsys):
    """`--signal-module` on fit, score and evaluate: the model file names the product's own signal and is scored
    with it; without the module, scoring it names the unknown signal and points at --signal-module."""
    module = ["--signal-module", str(own_signal_module)]
    model = tmp_path / "model.yml"
    assert main(["fit", str(small_demo), "--out", str(model), "--signals", f"core_depth,eb_engagement,{SIGNAL}",
                 *module]) == 0
    assert SIGNAL in yaml.safe_load(model.read_text())["columns"]
    scores = tmp_path / "scores.parquet"
    assert main(["score", str(small_demo), "--model", str(model), "--out", str(scores), *module]) == 0
    assert f"points_{SIGNAL}" in pl.read_parquet(scores).columns
    assert main(["evaluate", str(small_demo), "--model", str(model), "--out", str(tmp_path / "m.json"), *module]) == 0
    capsys.readouterr()
    unregister_signal(SIGNAL)  # a process that never loaded the module
    for command in (["score", "--out", str(tmp_path / "again.parquet")], ["evaluate", "--out", str(tmp_path / "e.json")]):
        assert main([command[0], str(small_demo), "--model", str(model), *command[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"hsutils {command[0]}: error: model reads unknown signal(s): {SIGNAL}; registered: ")
        assert "--signal-module FILE.py" in err and "\n" not in err
    assert not (tmp_path / "again.parquet").exists() and not (tmp_path / "e.json").exists()


def random_deal_history(seed: int, n_companies: int = 25) -> pl.DataFrame:
    """Deals of companies that sign, renew, expand, lose renewals and come back, with overlapping terms, terms
    known only after they start, deals without a close date and open deals."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_companies):
        moment = ts("2022-01-01") + timedelta(days=int(rng.integers(0, 300)))
        for j in range(int(rng.integers(1, 6))):
            start = moment + timedelta(days=int(rng.integers(-40, 60)))
            end = start + timedelta(days=int(rng.choice([30, 90, 180, 365, 400])))
            stage = str(rng.choice(["won", "won", "won", "lost", "open"]))
            close = start + timedelta(days=int(rng.integers(-30, 30)))
            rows.append({"deal_id": f"c{c:02d}-{j}", "company_id": f"c{c:02d}",
                         "deal_type": str(rng.choice(["new", "renewal", "renewal", "expansion"])), "stage": stage,
                         "term_start": start, "term_end": end,
                         "close_date": None if stage == "open" or rng.random() < 0.1 else close,
                         "arr": float(rng.integers(1, 100)) * 100, "seats": int(rng.integers(1, 20))})
            moment = end + timedelta(days=int(rng.integers(-60, 90)))
    return frame("deals", rows)


def renewal_outcome_by_the_rules(own: list[dict], term: dict, as_of: datetime, horizon: timedelta) -> tuple:
    """(outcome_churned, outcome_days_to_churn) of a term at as-of: its renewal is another renewal deal starting
    nearest the term's end, within 45 days (equally near: decided before open, then the latest closed)."""
    if not as_of < term["term_end"] <= as_of + horizon:
        return None, None
    near = [d for d in own if d["deal_type"] == "renewal" and d["deal_id"] != term["deal_id"]
            and abs(d["term_start"] - term["term_end"]) <= timedelta(days=45)]
    if not near:
        return None, None
    never = datetime(1900, 1, 1, tzinfo=UTC)
    renewal = sorted(near, key=lambda d: (abs(d["term_start"] - term["term_end"]), d["stage"] not in ("won", "lost"),
                                          never - (d["close_date"] or never)))[0]
    churned = {"lost": 1, "won": 0}.get(renewal["stage"])
    days = ((renewal["close_date"] or term["term_end"]) - as_of) / timedelta(days=1) if churned == 1 else None
    return churned, days


def customer_rows_by_the_rules(deals: pl.DataFrame, dates: list[datetime], created: datetime = AS_OF,
                               horizon: timedelta = timedelta(days=90)) -> pl.DataFrame:
    """The customer rows and their outcomes as the contract rules state them, one as-of and one company at a time
    (`created`: the snapshot moment)."""
    found = []
    every = deals.to_dicts()
    for as_of in sorted(dates):
        for company in sorted({d["company_id"] for d in every}):
            own = [d for d in every if d["company_id"] == company and d["close_date"] is not None]

            def in_force(d: dict) -> bool:
                return max(d["term_start"], d["close_date"]) <= as_of < d["term_end"]  # noqa: B023

            terms = [d for d in own if d["deal_type"] in ("new", "renewal") and d["stage"] == "won" and in_force(d)]
            if not terms:
                continue
            term = max(terms, key=lambda d: (max(d["term_start"], d["close_date"]), d["term_end"], d["deal_id"]))
            if any(d["deal_type"] == "renewal" and d["stage"] == "lost" and term["term_start"] <= d["close_date"] <= as_of
                   for d in own):
                continue  # its renewal was recorded lost during the current term
            expansions = [d for d in own if d["deal_type"] == "expansion" and d["stage"] == "won" and in_force(d)]
            churned, days = renewal_outcome_by_the_rules([d for d in every if d["company_id"] == company], term, as_of,
                                                         horizon)
            expanded = any(d["deal_type"] == "expansion" and d["stage"] == "won" and as_of < d["close_date"] <= as_of + horizon
                           for d in own)
            found.append({"company_id": company, "as_of": as_of, "term_deal_id": term["deal_id"],
                          "contracted_seats": term["seats"] + sum(d["seats"] for d in expansions),
                          "arr": term["arr"] + sum(d["arr"] for d in expansions),
                          "outcome_churned": churned, "outcome_days_to_churn": days,
                          "outcome_expanded": 1 if expanded else 0 if as_of + horizon <= created else None})
    return pl.DataFrame(found, schema_overrides={"outcome_churned": pl.Int8, "outcome_days_to_churn": pl.Float64,
                                                 "outcome_expanded": pl.Int8})


@pytest.mark.parametrize("seed", [0, 12, 17])  # 12 and 17: a monthly term renewed after a gap; duplicate renewals
@pytest.mark.filterwarnings("ignore:table deals. .* two contract terms:UserWarning")  # random histories overlap
def test_customer_rows_follow_the_contract_rules_on_random_deal_histories(seed, monkeypatch):
    """Both ways of finding the customer rows (the (week x company) array, and joins for large portals) give the
    rows, current term, seats, ARR and outcomes that the rules give, on weekly and on scattered as-of moments."""
    deals = random_deal_history(seed)
    tables = tiny_tables()
    tables["companies"] = frame("companies", [{"company_id": c, "name": c} for c in deals["company_id"].unique().sort()])
    tables["deals"] = deals
    snapshot = Snapshot(Manifest(1, "test", ts("2025-06-01"), ["report_published"]), tables)
    rng = np.random.default_rng(seed)
    last = ts("2025-05-30T06:00:00")
    first = customer_rows_by_the_rules(deals, [last - timedelta(days=d) for d in range(0, 1300, 3)])["as_of"].min()
    weekly = [last - timedelta(weeks=w) for w in range(170) if last - timedelta(weeks=w) >= first]
    scattered = sorted({max(first, last - timedelta(days=int(d), hours=int(h)))
                        for d, h in zip(rng.integers(0, 1100, 15), rng.integers(0, 24, 15), strict=True)})
    columns = ["company_id", "as_of", "term_deal_id", "contracted_seats", "arr", "outcome_churned",
               "outcome_days_to_churn", "outcome_expanded"]
    for dates in (weekly, scattered):
        expected = customer_rows_by_the_rules(deals, dates, created=snapshot.manifest.created_at)
        assert expected.height > 30 and expected["term_deal_id"].n_unique() > 10
        by_array = build_panel(snapshot, as_of_dates=dates, signals=["days_to_renewal"]).select(columns)
        assert_frame_equal(by_array, expected.cast(by_array.schema), check_exact=False, rel_tol=1e-12)
        monkeypatch.setattr(signals, "MAX_CUSTOMER_CELLS", 0)
        by_joins = build_panel(snapshot, as_of_dates=dates, signals=["days_to_renewal"]).select(columns)
        monkeypatch.undo()
        assert_frame_equal(by_joins, expected.cast(by_joins.schema), check_exact=False, rel_tol=1e-12)


def test_a_login_event_that_never_occurs_is_a_warning_not_silent_zeros():
    import warnings

    renamed = tiny_snapshot(login_event="sign_in")
    with pytest.warns(UserWarning, match=r"login event 'sign_in' never occurs \(most frequent events: .*login"):
        panel = build_panel(renamed, as_of_dates=[AS_OF], signals=["logins_28d"])
    assert panel["logins_28d"].to_list() == [0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recorded login event, or logins_28d not chosen: no warning
        build_panel(tiny_snapshot(), as_of_dates=[AS_OF], signals=["logins_28d"])
        build_panel(renamed, as_of_dates=[AS_OF], signals=["core_depth"])


def test_expansion_outcome_is_known_only_once_the_whole_horizon_lies_before_the_snapshot():
    """outcome_expanded is 0 (not null) when as_of + horizon falls exactly on the snapshot's time, null a day later."""
    snapshot = tiny_snapshot()  # created 2024-04-01; b has no expansion
    on_the_day = datetime(2024, 1, 2, tzinfo=UTC)  # + 90 days = 2024-04-01
    panel = build_panel(snapshot, as_of_dates=[on_the_day, on_the_day + timedelta(days=1)], horizon_days=90)
    assert row(panel, "b", on_the_day)["outcome_expanded"] == 0
    assert row(panel, "b", on_the_day + timedelta(days=1))["outcome_expanded"] is None

"""The usage helpers of SignalContext (encoded usage rows) against brute force on random usage data: active users,
usage sums over whole-week windows and distinct events, on their fast paths and their fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from hsutils import signals
from hsutils.schema import TABLES
from hsutils.signals import SignalContext
from hsutils.snapshot import Manifest, Snapshot

DAY_US = 86_400_000_000


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table].polars_schema)


def random_snapshot(seed: int, n_events: int, shared_users: bool, missing_users: bool = False
                    ) -> tuple[Snapshot, dict[str, np.ndarray]]:
    """Four customer companies (d joins late) and usage with `n_events` event names; user ids repeat across
    companies when `shared_users` (the per-company counting path), else each user belongs to one company; every
    eleventh row has no user id when `missing_users`."""
    rng = np.random.default_rng(seed)
    start, n = ts("2023-01-01"), 6000
    offsets = rng.integers(0, 420 * 86_400, n)
    offsets[::7] = offsets[::7] // 86_400 * 86_400 + 6 * 3600  # some exactly at the as-of time of day
    times = np.array([start + timedelta(seconds=int(s)) for s in offsets])
    companies = rng.choice(["a", "b", "c", "d", "e"], n)  # e is never a customer
    users = rng.integers(0, 40, n)
    user_ids = np.array([f"u{u}" if shared_users else f"{c}-u{u}" for c, u in zip(companies, users, strict=True)],
                        dtype=object)
    if missing_users:
        user_ids[::11] = None
    events = np.array([f"ev{e}" for e in rng.integers(0, n_events, n)])
    events[::3] = "login"
    counts = rng.integers(1, 6, n)
    usage = pl.DataFrame({
        "company_id": companies, "user_id": list(user_ids), "occurred_at": list(times), "event": events, "count": counts,
    }).cast(TABLES["usage_events"].polars_schema)
    deals = pl.DataFrame([
        {"deal_id": c, "company_id": c, "deal_type": "new", "stage": "won", "term_start": begin,
         "term_end": ts("2030-01-01"), "close_date": begin, "arr": 1.0, "seats": 3}
        for c, begin in (("a", start), ("b", start), ("c", start), ("d", ts("2023-12-01")))
    ], schema=TABLES["deals"].polars_schema)
    companies_table = pl.DataFrame([{"company_id": c, "name": c.upper()} for c in "abcde"]).with_columns(
        [pl.lit(None).alias(c) for c in TABLES["companies"].column_names if c not in ("company_id", "name")]
    ).cast(TABLES["companies"].polars_schema).select(TABLES["companies"].column_names)
    tables = {name: empty(name) for name in TABLES}
    tables.update(companies=companies_table, deals=deals, usage_events=usage)
    snapshot = Snapshot(Manifest(1, "test", ts("2024-04-01"), ["ev1"]), tables)
    raw = {"company": companies, "user": user_ids, "event": events, "count": counts,
           "time": np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[us]").astype(np.int64)}
    return snapshot, raw


@pytest.mark.parametrize(("n_events", "shared_users", "presence_bytes", "missing_users"),
                         [(6, False, None, False), (6, True, None, False), (80, False, None, False),
                          (80, False, 1, False), (6, False, None, True)])
def test_usage_helpers_match_brute_force(n_events, shared_users, presence_bytes, missing_users, monkeypatch):
    if presence_bytes is not None:  # distinct events counted one event per pass over the rows
        monkeypatch.setattr(signals, "PRESENCE_BYTES", presence_bytes)
    snapshot, raw = random_snapshot(n_events, n_events, shared_users, missing_users)
    anchor = ts("2024-03-13T06:00:00")  # as-of moments need not be midnight
    ctx = SignalContext(snapshot, anchor, [w for w in range(-45, 1) if w % 5 != 2])  # with gaps
    core = pl.col("event").is_in(["ev1", "ev2"])
    not_login = pl.col("event") != "login"
    sums = {days: ctx.usage_window_sum(days, where=core)["value"].to_list() for days in (7, 28, 84)}
    everything = ctx.usage_window_sum(28)["value"].to_list()
    breadth = ctx.usage_distinct_events(28, where=not_login)["value"].to_list()
    active = ctx.grid["active_seats"].to_list()
    weekly = ctx.usage_weekly_totals(where=core)
    three_back = weekly.at(3)
    # the weekly usage table, through the general helpers, gives the same whole-week sums
    table = ctx.usage_weekly()
    for days, values in sums.items():
        assert ctx.window_sum(table, "occurred_at", pl.col("count"), days=days, where=core)["value"].to_list() == values
        assert ctx.weekly(table, "occurred_at", pl.col("count"), where=core).sum_back(days // 7).tolist() == values
    grid = ctx.grid.select("company_id", "as_of").to_dicts()
    assert len(grid) > 100
    is_core = np.isin(raw["event"], ["ev1", "ev2"])
    for i, row in enumerate(grid):
        at = int(np.datetime64(row["as_of"].replace(tzinfo=None), "us").astype(np.int64))
        company = raw["company"] == row["company_id"]

        def inside(days: int, end: int = at) -> np.ndarray:
            return company & (raw["time"] <= end) & (raw["time"] > end - days * DAY_US)  # noqa: B023

        for days, values in sums.items():
            assert values[i] == raw["count"][inside(days) & is_core].sum(), (days, row)
        assert everything[i] == raw["count"][inside(28)].sum(), row
        assert three_back[i] == raw["count"][inside(7, at - 21 * DAY_US) & is_core].sum(), row
        assert breadth[i] == np.unique(raw["event"][inside(28) & (raw["event"] != "login")]).size, row
        assert active[i] == np.unique(raw["user"][inside(28) & (raw["user"] != None)].astype(str)).size, row  # noqa: E711


def test_odd_windows_fall_back_to_the_general_helpers():
    snapshot, raw = random_snapshot(3, 4, False)
    ctx = SignalContext(snapshot, ts("2024-03-13"), [-5, 0])
    assert ctx.usage_window_sum(30)["value"].to_list() == ctx.window_sum(
        "usage_events", "occurred_at", pl.col("count"), days=30)["value"].to_list()
    assert ctx.usage_distinct_events(10)["value"].to_list() == ctx.window_distinct(
        "usage_events", "occurred_at", pl.col("event"), days=10)["value"].to_list()
    assert ctx.usage_active_users(days=200)["value"].to_list() == ctx.window_distinct(
        "usage_events", "occurred_at", pl.col("user_id"), days=200)["value"].to_list()


@pytest.mark.parametrize("ufunc", [np.add, np.maximum])
def test_week_by_week_accumulation_equals_numpy_accumulate(ufunc):
    """Running totals and carried-forward maxima are computed one week row after another: bit for bit what
    `ufunc.accumulate` down the weeks gives (same operations in the same order), including NaN and -inf."""
    rng = np.random.default_rng(5)
    weekly = rng.normal(size=(9, 13)) * 10.0 ** rng.integers(-8, 9, size=(9, 13))
    weekly[2, 3], weekly[4, 5] = np.nan, -np.inf
    expected = ufunc.accumulate(weekly, axis=0)
    result = signals._accumulate_weeks(ufunc, weekly)
    assert result is weekly  # in place
    np.testing.assert_array_equal(result, expected)
    assert signals._accumulate_weeks(ufunc, np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize("null_share", [0.0, 0.3])
def test_row_gathers_and_sums_read_with_numpy_equal_polars(null_share):
    """The customer rows' columns gathered with numpy (`_take_rows`) and their expansions added with numpy
    (`_plus`) equal what polars gives: values, nulls and types, for numbers, times, flags and text, with nulls
    at the gathered places or only elsewhere."""
    rng = np.random.default_rng(11)
    n = 500
    nulls = rng.random(n) < null_share
    values = {
        "int": pl.Series("int", rng.integers(-10**12, 10**12, n), dtype=pl.Int64),
        "int32": pl.Series("int32", rng.integers(-1000, 1000, n), dtype=pl.Int32),
        "real": pl.Series("real", rng.normal(size=n) * 1e6),
        "time": pl.Series("time", rng.integers(0, 2 * 10**15, n)).cast(pl.Datetime("us", "UTC")),
        "flag": pl.Series("flag", rng.random(n) < 0.5),
        "text": pl.Series("text", [f"t{i}" for i in rng.integers(0, 50, n)]),
    }
    not_null = np.flatnonzero(~nulls)
    for column in values.values():
        column = pl.select(pl.when(pl.Series(~nulls)).then(column)).to_series().alias(column.name)
        for index in (rng.integers(0, n, 2000), rng.choice(not_null, 2000)):  # nulls at some places; at none
            taken = signals._take_rows(column, index)
            assert taken.dtype == column.dtype and taken.name == column.name
            assert taken.equals(column.gather(index)), column.name
        if column.dtype in (pl.Int64, pl.Int32, pl.Float64):
            extra = rng.integers(0, 100, n).astype(np.float64)
            expected = column + pl.Series(extra).cast(pl.Int64 if column.dtype.is_integer() else pl.Float64)
            result = signals._plus(column, extra)
            assert result.dtype == expected.dtype and result.equals(expected), column.name

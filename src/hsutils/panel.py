"""The point-in-time panel: one row per (company, weekly as-of) while the company is a customer.

Every column except `outcome_*` is computed only from rows dated at or before as-of and from deals decided by
then (a renewal that closes after as-of is still open at as-of). The outcome columns look at the horizon after
as-of and at nothing before it:

- outcome_churned: the current term ends within (as_of, as_of + horizon] and its renewal deal (another renewal
  deal of the company whose term_start is nearest that term_end, within 45 days; of equally near ones, a won or
  lost deal before an open one, then the latest closed) was lost (1) or won (0). Null when no term ends in the
  horizon, or its renewal is still open or missing at snapshot time.
- outcome_expanded: a won expansion of the company closes within (as_of, as_of + horizon] (1); 0 when none
  did and the horizon has fully passed by the snapshot moment; null when none did yet but the horizon reaches
  past the snapshot.
- outcome_days_to_churn: days from as_of to the lost renewal's close_date (the churn date) when
  outcome_churned is 1; null otherwise.

Segments: `arr_segment` is "high_touch" for the top 20 % of ARR among the customers at that as-of (ties
included; never an ARR of 0, a deal amount nobody filled in), else "scaled"; `tier` comes from the companies table; `size_bucket` from employees: 1-49, 50-199,
200-999, 1000+, or "unknown". The companies table holds current attributes (tier, size, owners): they carry no
date, so they are taken as they are in the snapshot at every as-of.

Customers: a company is in the panel at an as-of while a won new/renewal term is in force (term_start <= as_of <
term_end) and was won by then (close_date <= as_of); a renewal recorded lost by then ends it. ARR and contracted
seats are those of that term plus won expansions in force.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from hsutils.errors import InputError, counted, example_rows
from hsutils.files import check_frame_suffix, write_frame_atomic
from hsutils.signals import (
    DAY_US,
    DAYS_TO_RENEWAL,
    KEYS,
    SIGNALS,
    WEEK_US,
    Signal,
    SignalContext,
    epoch_us,
    login_event,
    resolve_signals,
    unknown_signals_error,
)
from hsutils.validate import check_core_events, core_events_checked, missing_events, most_frequent_events

HIGH_TOUCH_SHARE = 0.20
RENEWAL_MATCH_DAYS = 45
CORE_SIGNALS = ("core_depth", "core_depth_trend")
ECONOMIC_BUYER_SIGNALS = ("eb_engagement", "eb_days_since_touch")
STOPPED_EVENT_DAYS = 90  # a core event missing this long while usage goes on: renamed or no longer sent
# a contract term: a won new or renewal deal, known from its close date and in force from the later of that and its start
WON_TERM = pl.col("deal_type").is_in(["new", "renewal"]) & (pl.col("stage") == "won") & pl.col("close_date").is_not_null()
IN_FORCE_FROM = pl.max_horizontal("term_start", "close_date")
SIZE_BUCKETS = ((50, "1-49"), (200, "50-199"), (1000, "200-999"))
SEGMENT_COLUMNS = ("arr_segment", "tier", "size_bucket")  # the columns a panel's rows can be grouped by
CONTEXT_COLUMNS = (*SEGMENT_COLUMNS, "arr", "contracted_seats", "active_seats",
                   "days_to_renewal", "term_end", "cs_owner_id", "ae_owner_id")
OUTCOME_COLUMNS = ("outcome_churned", "outcome_expanded", "outcome_days_to_churn")


def check_model_columns_known(columns: Iterable[str]) -> None:
    """InputError for columns a model reads that are neither a registered signal nor a column every panel has (a
    signal of the user's own that this process has not loaded)."""
    unknown = [c for c in columns if c not in SIGNALS and c not in CONTEXT_COLUMNS]
    if unknown:
        raise unknown_signals_error(unknown, "model reads unknown signal(s)")


def to_utc(value: Any) -> datetime:
    """A date, datetime or ISO text as an aware UTC datetime (a bare date is midnight UTC)."""
    if pd.api.types.is_scalar(value) and pd.isna(value):  # None, NaN, NaT or pandas' NA (a list is not a date)
        raise InputError(f"as-of date {value!r} is empty: give a date (YYYY-MM-DD)")
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"as-of date {value!r} is not a date (use YYYY-MM-DD)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def first_customer_moment(snapshot: Any) -> datetime | None:
    """The earliest moment any contract term was in force and known (None without won new/renewal deals)."""
    terms = snapshot["deals"].filter(WON_TERM & (pl.col("term_end") > IN_FORCE_FROM))
    if terms.height == 0:
        return None
    return terms.select(IN_FORCE_FROM.min()).item()


def default_as_of_dates(snapshot: Any) -> list[datetime]:
    """Weekly as-of dates: midnight of the snapshot day, then every 7 days back while anyone was a customer."""
    start = first_customer_moment(snapshot)
    if start is None:
        raise InputError("table deals: no won new or renewal deal with a term, so no company is ever a customer")
    created = snapshot.manifest.created_at.astimezone(UTC)
    last = datetime(created.year, created.month, created.day, tzinfo=UTC)
    weeks = max(0, (last - start) // timedelta(weeks=1))
    return [last - timedelta(weeks=w) for w in range(weeks, -1, -1)]


def _check_as_of(snapshot: Any, dates: list[datetime]) -> None:
    created = snapshot.manifest.created_at.astimezone(UTC)
    late = [d for d in dates if d > created]
    if late:
        raise InputError(
            f"as-of {late[0].date().isoformat()} is after the snapshot was taken ({created.isoformat()}); "
            "nothing is known about it"
        )
    start = first_customer_moment(snapshot)
    if start is None:
        raise InputError("table deals: no won new or renewal deal with a term, so no company is ever a customer")
    early = [d for d in dates if d < start]
    if early:
        raise InputError(
            f"as-of {early[0].date().isoformat()} is before the data: the first contract term starts {start.date().isoformat()}"
        )


def _check_usage_events(snapshot: Any, chosen: list[Signal]) -> None:
    """The core signals need value moments: the manifest names some, and each occurs (checked here unless the
    snapshot passed the check when it was loaded, and neither its usage events nor its core events changed since;
    snapshots built in memory meet it here). A login event that never occurs leaves logins_28d
    at 0 everywhere: a warning says so, as the product may simply not record logins."""
    usage = snapshot["usage_events"]
    if usage.height == 0:
        unknown = [s.name for s in _reading_usage(chosen)]
        if unknown:
            warnings.warn(
                f"table usage_events has no rows (no product usage in this snapshot), so {', '.join(unknown)} and "
                "active_seats are empty (unknown) in every row", UserWarning, stacklevel=3,
            )
        return
    if any(s.name in CORE_SIGNALS for s in chosen):
        if not core_events_checked(snapshot):
            check_core_events(usage, snapshot.manifest)
        _warn_stopped_core_events(usage, snapshot.manifest)
    if any(s.name == "logins_28d" for s in chosen) and missing_events(usage, [login := login_event(snapshot.manifest)]):
        warnings.warn(
            f"table usage_events, column event: the login event {login!r} never occurs (most frequent events: "
            f"{most_frequent_events(usage)}), so logins_28d is 0 for every row; name the product's login event as "
            "login_event in manifest.json", UserWarning, stacklevel=3,
        )


def _warn_stopped_core_events(usage: pl.DataFrame, manifest: Any) -> None:
    """Warn about each core event that last occurs more than STOPPED_EVENT_DAYS before the latest usage event
    (renamed, or no longer sent by the product, while usage goes on): it still passes the check that it occurs,
    but core_depth misses it at the recent as-of dates."""
    latest = usage["occurred_at"].max()
    recent = usage.lazy().filter(pl.col("occurred_at") > latest - timedelta(days=STOPPED_EVENT_DAYS)).select(
        pl.col("event").unique().cast(pl.String)).collect()["event"].to_list()
    stopped = [e for e in manifest.core_events if e not in recent]
    if not stopped:  # the usual case, read from the recent rows only; the rest of the table only when one stopped
        return
    last = (usage.lazy().filter(pl.col("event").cast(pl.String).is_in(stopped))
            .group_by(pl.col("event").cast(pl.String)).agg(pl.col("occurred_at").max()).collect())
    for event, when in last.sort("occurred_at").iter_rows():
        if latest - when > timedelta(days=STOPPED_EVENT_DAYS):
            warnings.warn(
                f"table usage_events, column event: core event {event!r} last occurs {when.date().isoformat()}, "
                f"{(latest - when).days} days before the latest usage event, so core_depth and core_depth_trend "
                "no longer count it; if the product renamed it, name the new event in manifest.json core_events",
                UserWarning, stacklevel=4,
            )


def _check_other_inputs(snapshot: Any, chosen: list[Signal]) -> None:
    """Warn, once each, where a portal lacks what signals or segments are built from, so that they read the same in
    every row: a table without rows (no help desk, no surveys), no economic-buyer contact, no contract term with
    ARR, and companies with two contract terms in force side by side (the panel reads one of them)."""
    for table in ("engagements", "tickets", "surveys"):
        readers = [s.name for s in chosen if s.reads is not None and table in s.reads]
        if readers and snapshot[table].height == 0:
            verb = "has" if len(readers) == 1 else "have"
            warnings.warn(f"table {table} has no rows, so {', '.join(readers)} {verb} nothing to read and "
                          f"{'is' if len(readers) == 1 else 'are'} the same in every row", UserWarning, stacklevel=3)
    buyer_signals = [s.name for s in chosen if s.name in ECONOMIC_BUYER_SIGNALS]
    contacts = snapshot["contacts"]
    if buyer_signals and snapshot["engagements"].height and not (contacts["role"] == "economic_buyer").any():
        warnings.warn(
            f"table contacts, column role: no contact is an economic_buyer, so {' and '.join(buyer_signals)} are "
            "the same in every row (no buyer engagement); map the portal's decision-maker role to economic_buyer",
            UserWarning, stacklevel=3,
        )
    deals = snapshot["deals"]
    if deals.height and not (deals["arr"] > 0).any():
        warnings.warn("table deals, column arr: no deal records ARR (every arr is 0), so arr_segment cannot single "
                      "out high-touch accounts: every row is scaled", UserWarning, stacklevel=3)
    _warn_concurrent_terms(deals)


def _warn_concurrent_terms(deals: pl.DataFrame) -> None:
    """Warn about companies with two contract terms (won new/renewal deals) in force at the same time for longer
    than RENEWAL_MATCH_DAYS: the panel reads the latest-starting one as current, the other's ARR, seats and
    renewal are not counted, and a renewal lost during the current term ends the company's rows even when it
    renews the other term."""
    terms = deals.filter(WON_TERM).select("company_id", "deal_id", "term_start", "term_end", IN_FORCE_FROM.alias("_start")
                                          ).sort("company_id", "_start", "term_end")
    # a company has two terms in force together exactly when some term starts before the one before it ends (the
    # first term after any overlapping one overlaps it too): the previous row is enough, no running maximum
    previous_end = pl.when(pl.col("company_id") == pl.col("company_id").shift(1)).then(pl.col("term_end").shift(1))
    overlapping = terms.filter(previous_end - pl.col("_start") > timedelta(days=RENEWAL_MATCH_DAYS)).unique(
        "company_id", keep="first", maintain_order=True)
    if overlapping.height:
        companies = "company has" if overlapping.height == 1 else "companies have"
        examples = example_rows(overlapping.select("company_id", "deal_id", pl.col("term_start", "term_end").dt.date()))
        warnings.warn(
            f"table deals: {overlapping.height:,} {companies} two contract terms in force at the same time for more "
            f"than {RENEWAL_MATCH_DAYS} days (e.g. {examples}); the panel reads the latest-starting one as current, so "
            "the other's ARR, seats and renewal are not counted, and a renewal recorded lost while the current term "
            "runs ends the company's rows, whichever term it renews: a renewal's term starts when the term it renews "
            "ends, and add-ons are expansion deals", UserWarning, stacklevel=4,
        )


def _reading_usage(chosen: list[Signal]) -> list[Signal]:
    """The signals among `chosen` that declare they read usage_events."""
    return [s for s in chosen if s.reads is not None and "usage_events" in s.reads]


def _without_usage(panel: pl.DataFrame, chosen: list[Signal]) -> pl.DataFrame:
    """A panel of a snapshot without usage events: the usage signals and active_seats are unknown (null), not 0."""
    unknown = [s.name for s in _reading_usage(chosen)] + ["active_seats"]
    return panel.with_columns(pl.lit(None, dtype=panel.schema[name]).alias(name) for name in unknown if name in panel.columns)


def _size_bucket() -> pl.Expr:
    employees = pl.col("employees")
    expr = pl.when(employees.is_null() | (employees <= 0)).then(pl.lit("unknown"))
    for upper, label in SIZE_BUCKETS:
        expr = expr.when(employees < upper).then(pl.lit(label))
    return expr.otherwise(pl.lit("1000+"))


def _is_own(signal: Signal) -> bool:
    """Whether a signal is a product's own (registered outside the hsutils package), not a built-in one."""
    return not str(getattr(signal.compute, "__module__", "")).startswith("hsutils.")


def _computed(ctx: SignalContext, signal: Signal) -> pl.DataFrame:
    """What a signal's computation returns, collected; a product's own signal that fails, or returns something
    other than a polars frame, is an InputError of one line naming the signal (the built-in ones keep their
    traceback: their failure is a bug, not bad input)."""
    own = _is_own(signal)
    try:
        values = signal.compute(ctx)
        values = values.collect() if isinstance(values, pl.LazyFrame) else values
    except InputError:
        raise
    except Exception as exc:
        if not own:
            raise
        raise InputError(f"signal {signal.name}: its computation failed: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(values, pl.DataFrame):
        kind = "None" if values is None else f"{type(values).__module__.split('.')[0]}.{type(values).__name__}"
        raise InputError(
            f"signal {signal.name}: its computation returned {kind}; it must return a polars DataFrame "
            "with columns cid, k, value (e.g. ctx.keys.with_columns(value=...))"
        )
    return values


def _signal_values(ctx: SignalContext, signal: Signal) -> pl.DataFrame:
    """One signal's values as frame[cid, k, <signal name>] (checked: a computation must return cid, k and a value
    column of finite numbers, booleans or nulls)."""
    values = _computed(ctx, signal)
    missing = {"cid", "k", "value"} - set(values.columns)
    if missing:
        raise InputError(f"signal {signal.name}: its computation must return columns cid, k, value (missing {', '.join(sorted(missing))})")
    value = values.get_column("value")
    if not (value.dtype.is_numeric() or value.dtype in (pl.Boolean, pl.Null)):
        raise InputError(
            f"signal {signal.name}: column value is {value.dtype}, not numbers (e.g. "
            f"{', '.join(map(repr, value.drop_nulls().unique(maintain_order=True).head(3).to_list()))}); return numbers, or null where unknown"
        )
    value = value.cast(pl.Float64)
    infinite = value.is_infinite().fill_null(False) if _is_own(signal) else None  # built-in ones are tested
    if infinite is not None and infinite.any():
        raise InputError(
            f"signal {signal.name}: {int(infinite.sum()):,} value(s) are infinite (e.g. a ratio over 0; rows: "
            f"{example_rows(values.filter(infinite).select('cid', 'k', 'value'))}); return null where a value is unknown"
        )
    return values.select(pl.col("cid").cast(pl.UInt32), pl.col("k").cast(pl.Int32), value.alias(signal.name))


class _SharedWork:
    """Work two threads share out: each takes its own tasks from the front of its list and, once those are done,
    the other thread's tasks not yet started from the back of the other list; every task runs once. The calling
    thread takes from the background's list only after the background thread has started its first task."""

    def __init__(self, calling: list[tuple[str, Callable[[], Any]]], background: list[tuple[str, Callable[[], Any]]]) -> None:
        self._lists = {False: deque(calling), True: deque(background)}
        self._lock = threading.Lock()
        self.started = threading.Event()  # set once the background thread has taken a task (or found none)

    def run(self, in_background: bool, background_done: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Run tasks until both lists are empty; returns {task name: result} of the tasks run here."""
        done: dict[str, Any] = {}
        own, other = self._lists[in_background], self._lists[not in_background]
        while True:
            with self._lock:
                task = own.popleft() if own else None
                if task is None and other and (in_background or self.started.is_set()):
                    task = other.pop()
                waiting = task is None and bool(other) and not in_background
            if in_background:
                self.started.set()
            if task is None:
                if waiting and not background_done():  # the background's first task is its own
                    self.started.wait(0.005)
                    continue
                return done
            name, work = task
            done[name] = work()


def _class_panel(snapshot: Any, anchor: datetime, dates: list[datetime], chosen: list[Signal], horizon_days: int,
                 attributes: pl.DataFrame) -> pl.DataFrame:
    """The panel rows of as-of dates that lie on one weekly grid (all `dates` = anchor + k weeks).

    Signals that read usage events run in a background thread, after the usage events are encoded; meanwhile
    this thread computes the signals that declare other tables, the segments and the outcomes. A thread done with
    its own list takes the other's tasks not yet started, from the end of that list. Signals that declare
    nothing run last, here."""
    weeks = [int((d - anchor) // timedelta(weeks=1)) for d in dates]
    in_background = _reading_usage(chosen)
    read = {t for s in chosen if s.reads for t in s.reads} - {"usage_events", "deals"}  # deals: coded at once
    ctx = SignalContext(snapshot, anchor, weeks, read_usage_early=bool(in_background), code_early=sorted(read))
    keys = ctx.keys
    if keys.height == 0:
        return ctx.contracts.drop("k")
    last = [s for s in chosen if s.reads is None]

    def task(signal: Signal) -> tuple[str, Callable[[], Any]]:
        return signal.name, lambda: _signal_values(ctx, signal)

    context_task = ("\0context", lambda: _row_context(ctx, snapshot, horizon_days, attributes))
    calling = [task(s) for s in chosen if s not in in_background and s not in last] + [context_task]
    work = _SharedWork(calling, [task(s) for s in in_background])
    background = ctx.run_in_background(lambda: work.run(in_background=True))
    computed = work.run(in_background=False, background_done=background.done)
    computed.update(background.result())
    context = computed.pop(context_task[0])
    computed.update({s.name: _signal_values(ctx, s) for s in last})
    frame = ctx.grid
    for signal in chosen:
        values = computed[signal.name]
        if values.height == keys.height and values.select(KEYS).equals(keys):  # helper results come in grid order
            frame = frame.with_columns(values[signal.name])
        else:
            frame = frame.join(values.unique(KEYS, keep="first"), on=KEYS, how="left", maintain_order="left")
    if "days_to_renewal" not in frame.columns:
        frame = frame.with_columns(DAYS_TO_RENEWAL.alias("days_to_renewal"))
    return pl.concat([frame.drop("k"), context], how="horizontal")


def _company_attributes(snapshot: Any) -> pl.DataFrame:
    """One row per company_id: tier, size_bucket and owners."""
    return snapshot["companies"].select(
        "company_id", pl.col("tier").fill_null("unknown"), _size_bucket().alias("size_bucket"), "cs_owner_id", "ae_owner_id"
    ).unique("company_id", keep="first")


def _row_context(ctx: SignalContext, snapshot: Any, horizon_days: int, attributes: pl.DataFrame) -> pl.DataFrame:
    """Company attributes, arr_segment and the outcomes of the customer rows (one row each, in their order)."""
    rows = ctx.contracts
    by_code = ctx.companies.join(attributes, on="company_id", how="left", maintain_order="left").drop("cid", "company_id")
    # high_touch: rank <= ceil(20 % of the rows) by ARR, ties included, i.e. ARR at least the ARR ranked there
    top = pl.min_horizontal((pl.len() * HIGH_TOUCH_SHARE).ceil().cast(pl.Int64), pl.col("arr").count())
    cuts = rows.group_by("k").agg(pl.col("arr").drop_nulls().top_k(top).min().fill_null(np.nan).alias("_cut"))
    cut_of_week = np.full(ctx.k_max - ctx.k_min + 1, np.nan)
    cut_of_week[cuts["k"].to_numpy() - ctx.k_min] = cuts["_cut"].to_numpy()
    arr = rows["arr"].to_numpy()
    high_touch = (arr >= cut_of_week[ctx.grid_week - ctx.k_min]) & (arr > 0)  # NaN or no ARR recorded: scaled
    segment = pl.Series("arr_segment", ["scaled", "high_touch"]).gather(high_touch.view(np.uint8)).to_frame()
    outcomes = _outcomes(ctx, snapshot, horizon_days)
    return pl.concat([by_code[rows["cid"]], segment, outcomes], how="horizontal")


def _candidate(side: str, column: str) -> pl.Expr:
    return pl.col(f"{side}_renewal_{column}")


def _candidate_distance(side: str) -> pl.Expr:
    return (_candidate(side, "start") - pl.col("term_end")).abs()


def _candidate_usable(side: str) -> pl.Expr:
    return _candidate(side, "deal_id").is_not_null() & (_candidate_distance(side) <= timedelta(days=RENEWAL_MATCH_DAYS))


def _renewal_of_terms(terms: pl.DataFrame, renewals: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """Each term's renewal as frame[key, renewal_lost, renewal_close] (nulls when it has none): another
    renewal deal of the company starting nearest the term's end, within RENEWAL_MATCH_DAYS; of equally near ones a
    decided deal (won or lost) before an open one, then the latest closed, then the highest deal_id.

    Two as-of joins find the two candidates, so the work grows with the number of terms, not with terms x renewals:
    the first deal starting at or after the term's end, and the last starting at or before it (or, when that is
    the term itself, the deal before it in the same order); equal starts are ordered by preference for each search.
    """
    fields = ["renewal_deal_id", "renewal_start", "renewal_stage", "renewal_close", "renewal_rank"]
    ranked = renewals.sort(~pl.col("renewal_stage").is_in(["won", "lost"]), "renewal_close", "renewal_deal_id",
                           descending=[False, True, True], nulls_last=True).with_row_index("renewal_rank")  # 0: best
    best_first = ranked.sort("cid", "renewal_start", "renewal_rank")
    best_last = ranked.sort("cid", "renewal_start", "renewal_rank", descending=[False, False, True])
    same_company = pl.col("cid").shift(1) == pl.col("cid")
    best_last = best_last.with_columns(pl.when(same_company).then(pl.col(c).shift(1)).alias(f"_before_{c}") for c in fields)
    ends = terms.sort("cid", "term_end")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = ends.join_asof(best_first, left_on="term_end", right_on="renewal_start", by="cid", strategy="forward",
                               check_sortedness=False)
        before = ends.join_asof(best_last, left_on="term_end", right_on="renewal_start", by="cid",
                                strategy="backward", check_sortedness=False)
    itself = pl.col("renewal_deal_id") == pl.col("term_deal_id")
    candidates = pl.concat([  # side by side (the as-of joins keep the terms' order): a after the end, b before it
        after.select(*key, "term_end", *(pl.col(c).alias(f"a_{c}") for c in fields)),
        before.select(*(pl.when(itself).then(pl.col(f"_before_{c}")).otherwise(pl.col(c)).alias(f"b_{c}") for c in fields)),
    ], how="horizontal")
    a_first = (_candidate_distance("a") < _candidate_distance("b")) | (
        (_candidate_distance("a") == _candidate_distance("b")) & (_candidate("a", "rank") <= _candidate("b", "rank")))
    pick_a = _candidate_usable("a") & (~_candidate_usable("b") | a_first)
    stage = pl.when(pick_a).then(_candidate("a", "stage")).when(_candidate_usable("b")).then(_candidate("b", "stage"))
    return candidates.select(  # decided once per term: the rows carry numbers, not the stage's text
        *key, pl.when(stage == "lost").then(1).when(stage == "won").then(0).cast(pl.Int8).alias("renewal_lost"),
        pl.when(pick_a).then(_candidate("a", "close")).when(_candidate_usable("b")).then(_candidate("b", "close"))
        .alias("renewal_close"),
    )


def _outcomes(ctx: SignalContext, snapshot: Any, horizon_days: int) -> pl.DataFrame:
    """outcome_churned, outcome_expanded and outcome_days_to_churn of the customer rows `ctx.contracts`, in their
    order (they look only past as_of). Given the contract terms and each row's term in them (`ctx.terms`,
    `ctx.term_of_row`), renewals are matched once per term; otherwise once per distinct (cid, term_deal_id)."""
    rows, terms, term_of_row = ctx.contracts, ctx.terms, ctx.term_of_row
    deals = ctx._with_cid("deals").filter(pl.col("cid").is_not_null())  # coded once, as for the customer rows
    renewals = deals.filter(pl.col("deal_type") == "renewal").select(
        "cid", pl.col("deal_id").alias("renewal_deal_id"), pl.col("term_start").alias("renewal_start"),
        pl.col("stage").alias("renewal_stage"), pl.col("close_date").alias("renewal_close"),
    )
    by_term = terms is not None and term_of_row is not None
    if by_term:
        matching = terms.select("cid", pl.col("deal_id").alias("term_deal_id"), "term_end").with_row_index("_term")
        key = ["_term"]
    else:
        matching = rows.select("cid", "term_deal_id", "term_end").unique(["cid", "term_deal_id"])
        key = ["cid", "term_deal_id"]
    renewal = _renewal_of_terms(matching, renewals, key)
    matched = matching.join(renewal, on=key, how="left", maintain_order="left")
    if by_term:  # each row's renewal is its term's: read per term, gathered with numpy (see signals._take_rows)
        renewal_of, row_of = matched, term_of_row
    else:
        renewal_of = rows.select("cid", "term_deal_id").join(
            matched.select(*key, "renewal_lost", "renewal_close"), on=key, how="left", maintain_order="left")
        row_of = slice(None)
    renewal_close = renewal_of["renewal_close"].to_physical()
    lost = renewal_of["renewal_lost"].fill_null(-1).to_numpy()[row_of]
    has_close = renewal_close.is_not_null().to_numpy()[row_of]
    renewal_close_us = renewal_close.fill_null(0).to_numpy()[row_of]
    as_of = rows["as_of"].to_physical().to_numpy()
    term_end = rows["term_end"].to_physical()
    horizon_us = horizon_days * DAY_US
    in_horizon = term_end.is_not_null().to_numpy() if term_end.null_count() else np.ones(as_of.size, dtype=bool)
    term_end = term_end.fill_null(0).to_numpy()
    in_horizon &= (term_end > as_of) & (term_end <= as_of + horizon_us)
    churned = np.where(in_horizon, lost, -1).astype(np.int8)  # -1: no renewal decided in the horizon (null)
    churn = churned == 1
    days_to_churn = np.full(as_of.size, np.nan)  # the lost renewal's close date (else the term's end) - as_of
    days_to_churn[churn] = (np.where(has_close, renewal_close_us, term_end)[churn] - as_of[churn]) / DAY_US

    # won expansions closing in (as_of, as_of + horizon]: one closing at c counts at the as-of weeks from the first
    # at or after c - horizon to the last before c (entry/exit deltas summed over the weeks, as for window sums)
    expansions = deals.filter(
        (pl.col("deal_type") == "expansion") & (pl.col("stage") == "won") & pl.col("close_date").is_not_null()
    ).select("cid", pl.col("close_date").dt.epoch("us").alias("close"))
    close = expansions["close"].to_numpy()
    closing = ctx._company_totals(expansions["cid"].to_numpy(), ctx._week_of_us(close - horizon_us),
                                  ctx._week_of_us(close))
    created = epoch_us(snapshot.manifest.created_at.astimezone(UTC))
    # 1: expanded; 0: no expansion and the whole horizon lies before the snapshot; -1: not known yet (null)
    expanded = np.where(closing > 0, 1, np.where(as_of + horizon_us <= created, 0, -1)).astype(np.int8)
    return pl.DataFrame([
        _int8_or_null("outcome_expanded", expanded),
        _int8_or_null("outcome_churned", churned),
        pl.Series("outcome_days_to_churn", days_to_churn, nan_to_null=True),
    ])


def _int8_or_null(name: str, values: np.ndarray) -> pl.Series:
    """An Int8 column of `values`, null where they are negative."""
    column = pl.Series(name, values)
    return pl.select(pl.when(column >= 0).then(column)).to_series().alias(name) if (values < 0).any() else column


def build_panel(
    snapshot: Any,
    as_of_dates: Iterable[Any] | None = None,
    horizon_days: int = 90,
    signals: list[str] | str | None = None,
) -> pl.DataFrame:
    """Build the weekly point-in-time panel of a snapshot (see the module docstring for the columns).

    `as_of_dates`: dates, datetimes or ISO texts (UTC; a bare date is midnight), or one of them alone; default
    every 7 days back from the snapshot day. `signals`: registered signal names (default all). Raises InputError on bad input.
    """
    chosen = resolve_signals(signals)
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, Integral) or horizon_days < 1:
        raise InputError(f"horizon_days must be a whole number of days >= 1, not {horizon_days!r}")
    horizon_days = int(horizon_days)
    if as_of_dates is None:
        dates = default_as_of_dates(snapshot)
    else:
        if isinstance(as_of_dates, str | date) or not isinstance(as_of_dates, Iterable):  # one date, not a list
            as_of_dates = [as_of_dates]
        dates = sorted({to_utc(d) for d in as_of_dates})
        if not dates:
            raise InputError("no as-of date given")
        _check_as_of(snapshot, dates)
    _check_usage_events(snapshot, chosen)
    _check_other_inputs(snapshot, chosen)
    panel = _build_panel(snapshot, chosen, dates, horizon_days)
    return _without_usage(panel, chosen) if snapshot["usage_events"].height == 0 else panel


def _build_panel(snapshot: Any, chosen: list[Signal], dates: list[datetime], horizon_days: int) -> pl.DataFrame:
    # as-of dates 7 days apart share one weekly grid; other spacings form at most 7 grids
    last = dates[-1]
    classes: dict[int, list[datetime]] = {}
    for d in dates:
        classes.setdefault(int((last - d) // timedelta(microseconds=1)) % WEEK_US, []).append(d)
    attributes = _company_attributes(snapshot)
    parts = [_class_panel(snapshot, max(group), group, chosen, horizon_days, attributes) for group in classes.values()]
    parts = [p for p in parts if p.height]
    if not parts:
        shown = ", ".join(d.date().isoformat() for d in dates[:3])
        raise InputError(f"empty panel: no company is a customer at the as-of date(s) {shown}")
    panel = pl.concat(parts, how="vertical")
    signal_columns = [s.name for s in chosen]
    context = [c for c in CONTEXT_COLUMNS if c not in signal_columns]
    leading = ["company_id", "as_of", *signal_columns, *context]
    extra = [c for c in panel.columns if c not in leading and c not in OUTCOME_COLUMNS and c != "cid"]
    # sort by as_of, then company_id (company codes follow the sorted company ids); keys are unique per row. One
    # weekly grid comes in that order already.
    panel = panel.select(*leading, *extra, *OUTCOME_COLUMNS, "cid")
    as_of, cid = panel["as_of"].to_physical().to_numpy(), panel["cid"].to_numpy().astype(np.int64)
    step, cid_step = np.diff(as_of), np.diff(cid)
    if not np.all((step > 0) | ((step == 0) & (cid_step > 0))):
        panel = panel[np.lexsort((cid, as_of))]
    return panel.drop("cid")


def write_panel(panel: pl.DataFrame, out: str | Path) -> Path:
    """Write a panel to .parquet or .csv atomically (temporary file in the same folder, then rename)."""
    out = check_frame_suffix(out, "output")
    if panel.height == 0:
        raise InputError(f"output {out}: the panel is empty, nothing written")
    return write_frame_atomic(panel, out)


def cli_panel(args: Any) -> int:
    """`hsutils panel DIR --out FILE`: build the panel and write it; one line of summary."""
    from hsutils.snapshot import load_snapshot

    out = check_frame_suffix(args.out, "output")
    chosen = resolve_signals(args.signals)
    snapshot = load_snapshot(args.dir, mapping=args.mapping)
    panel = build_panel(snapshot, horizon_days=args.horizon_days, signals=[s.name for s in chosen])
    write_panel(panel, out)
    renewals = (  # a renewal: a (company, term_end) that some row's horizon reaches with its decision
        panel.filter(pl.col("outcome_churned").is_not_null())
        .group_by("company_id", "term_end").agg(pl.col("outcome_churned").max().alias("lost"))
    )
    print(
        f"panel: {counted(panel.height, 'row')}, {counted(panel['company_id'].n_unique(), 'company')}, "
        f"{counted(panel['as_of'].n_unique(), 'weekly as-of date')}, {counted(renewals.height, 'decided renewal')} "
        "in the horizon "
        f"({int(renewals['lost'].sum()):,} lost) -> {out}"
    )
    return 0

"""Point-in-time guarantee: deleting, changing or adding anything dated after an as-of date leaves every
non-outcome column at (and before) that as-of unchanged; the outcome columns are what the future decides."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from hsutils.panel import build_panel, default_as_of_dates
from hsutils.snapshot import Snapshot, load_snapshot

US = timedelta(microseconds=1)
ID_COLUMNS = {"contacts": "contact_id", "deals": "deal_id", "engagements": "engagement_id", "tickets": "ticket_id",
              "surveys": "response_id"}


def _after(table: str, moment: datetime) -> pl.Expr:
    """Rows dated after `moment` (for deals: not decided by then, including open ones)."""
    if table == "deals":
        return pl.col("close_date").is_null() | (pl.col("close_date") > moment)
    column = {"companies": "created_at", "contacts": "created_at", "engagements": "occurred_at", "tickets": "created_at",
              "surveys": "submitted_at", "usage_events": "occurred_at"}[table]
    return pl.col(column) > moment


def truncate(snapshot: Snapshot, moment: datetime) -> Snapshot:
    """The snapshot as it would have been taken at `moment` (tickets closed later are still open)."""
    tables = {name: frame.filter(~_after(name, moment)) for name, frame in snapshot.tables.items()}
    tables["tickets"] = tables["tickets"].with_columns(
        pl.when(pl.col("closed_at") > moment).then(None).otherwise(pl.col("closed_at")).alias("closed_at")
    )
    return Snapshot(snapshot.manifest, tables)


def change(snapshot: Snapshot, moment: datetime) -> Snapshot:
    """Every future row altered in the ways that feed the signals."""
    core = snapshot.manifest.core_events[0]
    after = {name: _after(name, moment) for name in snapshot.tables}
    t = dict(snapshot.tables)

    def alter(name: str, **exprs: pl.Expr) -> None:
        t[name] = t[name].with_columns(**{c: pl.when(after[name]).then(e).otherwise(pl.col(c)) for c, e in exprs.items()})

    alter("usage_events", event=pl.lit(core), count=pl.col("count") * 7, user_id=pl.lit("intruder"))
    alter("engagements", type=pl.lit("meeting"), meeting_kind=pl.lit("qbr"), direction=pl.lit("inbound"),
          opened=pl.lit(True), replied=pl.lit(True))
    alter("tickets", sentiment=pl.lit("negative"), escalated=pl.lit(True))
    t["tickets"] = t["tickets"].with_columns(
        pl.when(pl.col("closed_at") > moment).then(pl.col("closed_at") + timedelta(days=30)).otherwise(pl.col("closed_at"))
    )
    alter("surveys", score=pl.lit(0.0), kind=pl.lit("nps"))
    alter("contacts", role=pl.lit("economic_buyer"))
    flipped = pl.when(pl.col("stage") == "won").then(pl.lit("lost")).otherwise(pl.lit("won"))
    alter("deals", stage=flipped, arr=pl.col("arr") * 3, seats=pl.col("seats") + 50,
          close_date=pl.max_horizontal(pl.col("close_date"), pl.lit(moment + timedelta(days=1))))
    return Snapshot(snapshot.manifest, t)


def add(snapshot: Snapshot, moment: datetime) -> Snapshot:
    """Copies of past rows dated one microsecond after `moment`, including deals that would start terms, win
    expansions or lose renewals had they been known."""
    just_after = moment + US
    t = dict(snapshot.tables)
    copies = {
        "usage_events": t["usage_events"].filter(pl.col("occurred_at") <= moment).tail(5000)
        .with_columns(occurred_at=pl.lit(just_after), event=pl.lit(snapshot.manifest.core_events[0])),
        "engagements": t["engagements"].filter(pl.col("occurred_at") <= moment).tail(3000)
        .with_columns(occurred_at=pl.lit(just_after), replied=pl.lit(True), type=pl.lit("email")),
        "tickets": t["tickets"].filter(pl.col("created_at") <= moment).tail(1000)
        .with_columns(created_at=pl.lit(just_after), sentiment=pl.lit("negative"), closed_at=pl.lit(None)),
        "surveys": t["surveys"].filter(pl.col("submitted_at") <= moment).tail(500)
        .with_columns(submitted_at=pl.lit(just_after), score=pl.lit(0.0), kind=pl.lit("nps")),
        "contacts": t["contacts"].tail(500).with_columns(created_at=pl.lit(just_after), role=pl.lit("economic_buyer")),
    }
    deals = t["deals"].filter(pl.col("close_date") <= moment)
    copies["deals"] = pl.concat([
        deals.filter(pl.col("deal_type") != "expansion").with_columns(
            stage=pl.lit("won"), deal_type=pl.lit("renewal"), term_start=pl.lit(moment - timedelta(days=10)),
            term_end=pl.lit(moment + timedelta(days=20)), seats=pl.lit(999), close_date=pl.lit(just_after)),
        deals.with_columns(stage=pl.lit("lost"), deal_type=pl.lit("renewal"), close_date=pl.lit(just_after)),
        deals.with_columns(stage=pl.lit("won"), deal_type=pl.lit("expansion"), close_date=pl.lit(just_after),
                           term_start=pl.lit(moment - timedelta(days=1))),
    ], how="vertical_relaxed")
    for name, extra in copies.items():
        if name in ID_COLUMNS:
            extra = extra.with_columns((pl.lit("future-") + pl.col(ID_COLUMNS[name])).alias(ID_COLUMNS[name]))
        t[name] = pl.concat([t[name], extra.select(t[name].columns).cast(t[name].schema)])
    return Snapshot(snapshot.manifest, t)


@pytest.fixture(scope="module", params=["parquet", "csv"])
def base(request, small_demo, small_demo_csv):
    """(snapshot, as-of dates, the panel at those dates) for the demo read from parquet and from CSV."""
    snapshot = load_snapshot(small_demo if request.param == "parquet" else small_demo_csv)
    weekly = default_as_of_dates(snapshot)
    dates = [weekly[int(len(weekly) * share)] for share in (0.35, 0.6, 0.85)] + [weekly[-1]]
    return snapshot, dates, build_panel(snapshot, as_of_dates=dates)


def _features(panel: pl.DataFrame, moment: datetime) -> pl.DataFrame:
    keep = [c for c in panel.columns if not c.startswith("outcome_")]
    return panel.filter(pl.col("as_of") <= moment).select(keep).sort("as_of", "company_id")


@pytest.mark.parametrize("perturb", [truncate, change, add], ids=["delete", "change", "add"])
@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.filterwarnings("ignore:table usage_events, column event. core event:UserWarning")  # renamed futures
@pytest.mark.filterwarnings("ignore:table deals. .* two contract terms:UserWarning")  # added future terms
def test_the_future_never_changes_the_past(base, perturb, which):
    snapshot, dates, panel = base
    moment = dates[which]
    perturbed = build_panel(perturb(snapshot, moment), as_of_dates=dates)
    before, after = _features(panel, moment), _features(perturbed, moment)
    assert before.height > 100
    assert before.equals(after), "a non-outcome column at or before as-of changed with the future"
    if perturb is not add:  # the future decides the outcomes: altering it changes them
        outcomes = ["outcome_churned", "outcome_expanded", "outcome_days_to_churn"]
        at = [panel.filter(pl.col("as_of") == moment).select("company_id", *outcomes).sort("company_id"),
              perturbed.filter(pl.col("as_of") == moment).select("company_id", *outcomes).sort("company_id")]
        assert not at[0].equals(at[1])
    later = panel.filter(pl.col("as_of") > moment)
    assert later.height and not later.select(_features(later, dates[-1]).columns).equals(
        perturbed.filter(pl.col("as_of") > moment).select(later.columns[: len(_features(later, dates[-1]).columns)])
    ), "the perturbation did not reach the later as-of dates: it tests nothing"


def test_outcomes_use_only_the_future(base):
    """Outcomes at an as-of are unchanged by rewriting the history before it, as long as the current term, the
    renewal decisions after it and the expansions after it are kept."""
    snapshot, dates, panel = base
    moment = dates[1]
    t = dict(snapshot.tables)
    past = {"usage_events": "occurred_at", "engagements": "occurred_at", "tickets": "created_at", "surveys": "submitted_at"}
    for name, column in past.items():
        t[name] = t[name].filter(pl.col(column) > moment)  # drop the whole past activity
    rewritten = build_panel(Snapshot(snapshot.manifest, t), as_of_dates=[moment])
    outcomes = ["company_id", "outcome_churned", "outcome_expanded", "outcome_days_to_churn"]
    original = panel.filter(pl.col("as_of") == moment)
    assert rewritten.select(outcomes).sort("company_id").equals(original.select(outcomes).sort("company_id"))
    assert not rewritten.select("core_depth").equals(original.sort("company_id").select("core_depth"))

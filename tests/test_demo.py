"""The demo portal: determinism, validity in parquet and CSV, point-in-time honesty, and its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from hsutils import cli
from hsutils.demo import GROUND_TRUTH_COEFFICIENTS, generate_demo, truth_folder, write_demo
from hsutils.errors import InputError
from hsutils.schema import TABLE_NAMES, TABLES
from hsutils.snapshot import Snapshot, load_snapshot


@pytest.fixture(scope="module")
def portal(small_demo):
    return load_snapshot(small_demo)


@pytest.fixture(scope="module")
def truth(small_demo) -> pl.DataFrame:
    return pl.read_parquet(truth_folder(small_demo) / "renewals.parquet")


def renewal_signals(portal: Snapshot) -> pl.DataFrame:
    """Every decided renewal with simple signals computed from the tables at one week before the term ended."""
    t = portal.tables
    deals = t["deals"].filter((pl.col("deal_type") == "renewal") & (pl.col("stage") != "open"))
    dec = deals.select(
        "deal_id", "company_id", (pl.col("stage") == "lost").alias("churned"),
        (pl.col("term_start") - pl.duration(days=7)).alias("as_of"),
    )

    def window(frame: pl.DataFrame, column: str, days: int) -> pl.DataFrame:
        return dec.join(frame.with_columns(pl.col("company_id").cast(pl.String)), on="company_id").filter(
            (pl.col(column) < pl.col("as_of")) & (pl.col(column) >= pl.col("as_of") - pl.duration(days=days))
        )

    core = portal.manifest.core_events
    login = portal.manifest.extra.get("login_event", "login")
    usage = window(t["usage_events"], "occurred_at", 28).group_by("deal_id").agg(
        pl.col("count").filter(pl.col("event").is_in(core)).sum().alias("core"),
        pl.col("user_id").n_unique().alias("users"),
        pl.col("count").filter(pl.col("event") == login).sum().alias("logins"),
        pl.col("event").filter(~pl.col("event").is_in([login, *core])).n_unique().alias("features"),
    )
    roles = t["contacts"].select("contact_id", "role")
    eng = window(t["engagements"].join(roles, on="contact_id", how="left"), "occurred_at", 90)
    buyer_touch = (pl.col("role") == "economic_buyer") & (
        pl.col("type").is_in(["meeting", "call"]) | (pl.col("direction") == "inbound") | pl.col("replied").fill_null(False)
    )
    eng = eng.group_by("deal_id").agg(
        buyer_touch.sum().alias("eb_touches"),
        (pl.col("role") == "champion").sum().alias("champion_touches"),
        pl.col("opened").filter((pl.col("type") == "email") & (pl.col("direction") == "outbound")).mean().alias("open_rate"),
    )
    return (
        dec.join(usage, on="deal_id", how="left")
        .join(eng, on="deal_id", how="left")
        .with_columns(
            (pl.col("core").fill_null(0) / pl.col("users").fill_null(0).clip(1, None)).alias("core_depth"),
            pl.col("users", "logins", "features").fill_null(0),
            pl.col("eb_touches").fill_null(0),
            pl.col("champion_touches").fill_null(0),
        )
    )


@pytest.fixture(scope="module")
def decisions() -> pl.DataFrame:
    """Renewal signals of a 1,000-company portal (in memory): enough churns for stable group means."""
    demo = generate_demo(companies=1000, seed=21)
    return renewal_signals(Snapshot(manifest=demo.manifest, tables=demo.tables))


def test_same_seed_same_portal_and_other_seed_differs():
    a = generate_demo(companies=250, seed=3)
    b = generate_demo(companies=250, seed=3)
    c = generate_demo(companies=250, seed=4)
    for name in TABLE_NAMES:
        assert a.tables[name].equals(b.tables[name]), name
    assert a.truth.equals(b.truth)
    assert a.manifest.to_dict() == b.manifest.to_dict()
    assert not a.tables["usage_events"].equals(c.tables["usage_events"])
    assert not a.tables["deals"].equals(c.tables["deals"])


def test_tables_have_canonical_columns_and_dtypes():
    demo = generate_demo(companies=120, seed=5)
    for name in TABLE_NAMES:
        assert demo.tables[name].schema == TABLES[name].polars_schema, name
    assert demo.manifest.created_at.isoformat() == "2026-11-15T00:00:00+00:00"


def test_generated_snapshots_validate_in_parquet_and_csv(small_demo, small_demo_csv, capsys):
    assert cli.main(["validate", str(small_demo)]) == 0
    assert cli.main(["validate", str(small_demo_csv)]) == 0
    assert sorted(p.suffix for p in small_demo_csv.iterdir() if p.name != "manifest.json") == [".csv"] * 7
    assert "ok:" in capsys.readouterr().out


def test_manifest_names_core_and_login_events(portal):
    events = set(portal["usage_events"]["event"].unique())
    assert set(portal.manifest.core_events) <= events
    assert portal.manifest.extra["login_event"] in events
    assert len(events - set(portal.manifest.core_events) - {"login"}) >= 5  # features for breadth


def test_nothing_is_dated_after_the_snapshot_moment(portal):
    limit = portal.manifest.created_at
    for name, spec in TABLES.items():
        for column in spec.time_columns:
            latest = portal[name][column].max()
            assert latest is None or latest <= limit, (name, column, latest)
    deals = portal["deals"]
    assert deals.filter(pl.col("stage") != "open")["term_start"].max() <= limit
    assert deals.filter((pl.col("stage") == "open") != pl.col("close_date").is_null()).height == 0
    assert deals.filter(pl.col("stage") == "open")["term_start"].min() > limit


def test_truth_sits_beside_the_snapshot_never_inside(small_demo, truth):
    inside = {p.name for p in small_demo.iterdir()}
    assert inside == {f"{t}.parquet" for t in TABLE_NAMES} | {"manifest.json"}
    assert truth_folder(small_demo).parent == small_demo.parent
    assert (truth_folder(small_demo) / "README.md").read_text().count("logit") >= 1
    manifest = json.loads((small_demo / "manifest.json").read_text())
    assert "p_churn" not in json.dumps(manifest)
    assert {"deal_id", "company_id", "term_end", "p_churn", "churned", "core_depth", "eb_engagement"} <= set(truth.columns)
    assert truth["p_churn"].is_between(0, 1).all()


def test_truth_matches_the_deals(portal, truth):
    decided = portal["deals"].filter((pl.col("deal_type") == "renewal") & (pl.col("stage") != "open"))
    joined = truth.join(decided, on="deal_id", how="inner")
    assert joined.height == truth.height == decided.height
    assert (joined["churned"] == (joined["stage"] == "lost")).all()
    lost = joined.filter(pl.col("churned"))
    assert (lost["close_date"] == lost["term_start"]).all()  # churn date = end of the last term


def test_churn_rate_is_realistic_and_probabilities_calibrated(truth):
    annual = truth.filter(pl.col("term") == "annual")
    assert 0.05 <= annual["churned"].mean() <= 0.2
    monthly = truth.filter(pl.col("term") == "monthly")
    assert 0.002 <= monthly["churned"].mean() < annual["churned"].mean()
    assert truth["churned"].sum() >= 40  # enough churns to learn from
    assert abs(truth["churned"].mean() - truth["p_churn"].mean()) < 0.03


def test_churned_companies_go_quiet_after_churn(portal):
    churn = portal["deals"].filter(pl.col("stage") == "lost").select("company_id", "close_date")
    usage = portal["usage_events"].with_columns(pl.col("company_id").cast(pl.String))  # a dictionary column
    late = usage.join(churn, on="company_id").filter(pl.col("occurred_at") >= pl.col("close_date"))
    assert churn.height > 0 and late.height == 0
    late_eng = portal["engagements"].join(churn, on="company_id").filter(pl.col("occurred_at") >= pl.col("close_date"))
    assert late_eng.height == 0


def test_churned_renewals_show_weak_value_signals_while_opens_barely_differ(decisions):
    means = decisions.group_by("churned").agg(pl.col("eb_touches", "core_depth", "open_rate").mean())
    churned = means.filter(pl.col("churned")).row(0, named=True)
    renewed = means.filter(~pl.col("churned")).row(0, named=True)
    assert churned["eb_touches"] < 0.8 * renewed["eb_touches"]
    assert churned["core_depth"] < 0.6 * renewed["core_depth"]
    assert abs(churned["open_rate"] - renewed["open_rate"]) < 0.06


def test_logins_and_feature_use_barely_differ_while_active_users_do(decisions):
    """Activity in the 28 days before each decision: logins and non-core features are habits, active users a driver."""
    churned = decisions["churned"].to_numpy()
    auc = {c: roc_auc_score(churned, decisions[c].to_numpy()) for c in ("logins", "features", "users")}
    assert abs(auc["logins"] - 0.5) < 0.08, auc
    assert abs(auc["features"] - 0.5) < 0.08, auc
    assert auc["users"] < 0.42, auc  # churned renewals had fewer active users: seat use stays a true driver
    means = decisions.group_by("churned").agg(pl.col("logins").median())
    median = dict(zip(means["churned"], means["logins"], strict=True))
    assert abs(median[True] - median[False]) <= 0.25 * median[False]


def test_some_churns_keep_an_active_champion_while_the_buyer_is_quiet(decisions):
    quiet = decisions.filter(pl.col("churned") & (pl.col("eb_touches") == 0) & (pl.col("champion_touches") >= 3))
    assert quiet.height >= 5


def test_segments_churn_for_partly_different_reasons():
    for driver in ("eb_engagement", "support_negative_share"):
        assert abs(GROUND_TRUTH_COEFFICIENTS["enterprise"][driver]) > abs(GROUND_TRUTH_COEFFICIENTS["starter"][driver])
    for driver in ("core_depth", "seat_utilisation"):
        assert abs(GROUND_TRUTH_COEFFICIENTS["starter"][driver]) > abs(GROUND_TRUTH_COEFFICIENTS["enterprise"][driver])


def test_expansions_and_monthly_terms_exist(portal, truth):
    deals = portal["deals"]
    exp = deals.filter(pl.col("deal_type") == "expansion")
    assert exp.height >= 10
    assert (exp["stage"] == "won").all() and (exp["seats"] > 0).all() and (exp["arr"] > 0).all()
    assert (exp["term_end"] > exp["term_start"]).all()
    length = (deals["term_end"] - deals["term_start"]).dt.total_days()
    assert (length.is_between(28, 31)).sum() >= 20
    assert (length.is_between(365, 366)).sum() >= 20
    assert set(truth["term"].unique()) == {"annual", "monthly"}
    # expansions go to accounts that were renewing, not to those about to churn
    expanded = set(exp["company_id"])
    lost = set(deals.filter(pl.col("stage") == "lost")["company_id"])
    assert len(expanded & lost) < 0.5 * len(expanded)


def test_values_are_missing_where_hubspot_data_usually_is(portal):
    companies, tickets = portal["companies"], portal["tickets"]
    nps_answered = portal["surveys"].filter(pl.col("kind") == "nps")["company_id"].n_unique()
    assert nps_answered < 0.8 * companies.height
    assert 0.3 < tickets["csat"].null_count() / tickets.height < 0.95
    assert companies["employees"].null_count() > 0
    assert portal["engagements"]["contact_id"].null_count() > 0
    assert set(companies["tier"].unique()) == {"starter", "pro", "enterprise"}


def test_usage_rows_are_one_per_user_day_and_event(portal):
    usage = portal["usage_events"]
    assert usage.select("user_id", "occurred_at", "event").is_duplicated().sum() == 0
    assert (usage["count"] >= 1).all()


def test_arr_scales_with_tier(portal):
    first = portal["deals"].filter(pl.col("deal_type") == "new").join(portal["companies"], on="company_id")
    median = first.group_by("tier").agg(pl.col("arr").median()).sort("arr")["tier"].to_list()
    assert median == ["starter", "pro", "enterprise"]


def test_write_demo_never_overwrites(tmp_path: Path, capsys):
    out = tmp_path / "portal"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError):
        write_demo(out, companies=20, seed=1)
    assert cli.main(["demo-data", "--out", str(out), "--companies", "20"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_cli_writes_a_small_portal(tmp_path: Path, capsys):
    out = tmp_path / "tiny"
    assert cli.main(["demo-data", "--out", str(out), "--companies", "30", "--seed", "2"]) == 0
    assert (out / "manifest.json").is_file() and (truth_folder(out) / "renewals.parquet").is_file()
    assert "30 companies" in capsys.readouterr().out
    assert cli.main(["demo-data", "--out", str(tmp_path / "none"), "--companies", "0"]) == 2


def test_manifest_names_every_company_owner(portal):
    """The demo records a name for each CS and AE owner (as a HubSpot pull does), so its account lists read well."""
    companies = portal["companies"]
    owners = set(companies["cs_owner_id"].drop_nulls()) | set(companies["ae_owner_id"].drop_nulls())
    names = portal.manifest.owner_names
    assert set(names) == owners
    assert all(" " in name and not name.startswith("o0") for name in names.values())

"""The weekly panel on the demo portal: shape, segments, outcomes against the demo's ground truth, signal
directions, agreement with the pandas reference, the command line and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from own_signals import SIGNAL, write_signal_module
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from hsutils.cli import main
from hsutils.errors import InputError
from hsutils.files import write_atomic
from hsutils.panel import build_panel, default_as_of_dates
from hsutils.signals import SIGNALS
from hsutils.snapshot import Snapshot, load_snapshot

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CONTRACT_COLUMNS = list(dict.fromkeys([
    "company_id", "as_of", *SIGNALS.keys(), "arr_segment", "tier", "size_bucket", "arr", "contracted_seats",
    "active_seats", "days_to_renewal", "term_end", "cs_owner_id", "ae_owner_id", "outcome_churned",
    "outcome_expanded", "outcome_days_to_churn",
]))


@pytest.fixture(scope="module")
def demo(small_demo):
    return load_snapshot(small_demo)


@pytest.fixture(scope="module")
def panel(demo):
    return build_panel(demo)


@pytest.fixture(scope="module")
def decisions(small_demo, panel):
    """One panel row per renewal decision of the demo's ground truth, at the as-of of the decision."""
    truth = pl.read_parquet(small_demo.with_name(small_demo.name + ".truth") / "renewals.parquet")
    rows = truth.rename({c: f"truth_{c}" for c in truth.columns if c not in ("company_id", "decided_at")}).join(
        panel, left_on=["company_id", "decided_at"], right_on=["company_id", "as_of"], how="inner"
    )
    assert rows.height >= 0.95 * truth.height  # every decision falls on a weekly as-of of a customer
    return rows


def test_panel_shape_and_columns(demo, panel):
    assert [c for c in panel.columns if c in CONTRACT_COLUMNS] == [c for c in CONTRACT_COLUMNS if c in panel.columns]
    assert set(CONTRACT_COLUMNS) <= set(panel.columns)
    assert panel.schema["as_of"] == pl.Datetime("us", "UTC")
    assert panel.select(pl.struct("company_id", "as_of").is_duplicated().any()).item() is False
    dates = panel["as_of"].unique().sort()
    assert dates[-1] == datetime(2026, 11, 15, tzinfo=UTC) == default_as_of_dates(demo)[-1]
    assert set(dates.diff().drop_nulls().to_list()) == {timedelta(weeks=1)}
    assert (panel["term_end"] > panel["as_of"]).all() and (panel["days_to_renewal"] > 0).all()
    assert set(panel["outcome_churned"].drop_nulls().unique()) == {0, 1}
    assert set(panel["size_bucket"].unique()) <= {"1-49", "50-199", "200-999", "1000+", "unknown"}
    assert set(panel["tier"].unique()) <= {"starter", "pro", "enterprise"}
    assert panel["cs_owner_id"].null_count() < panel.height
    # high_touch = the top 20 % of ARR among the customers at each as-of
    share = panel.group_by("as_of").agg(
        (pl.col("arr_segment") == "high_touch").mean().alias("share"),
        pl.col("arr").filter(pl.col("arr_segment") == "high_touch").min().alias("low_high"),
        pl.col("arr").filter(pl.col("arr_segment") == "scaled").max().alias("top_scaled"),
        pl.len().alias("n"),
    ).filter(pl.col("n") >= 20)
    assert share["share"].is_between(0.19, 0.26).all()
    assert (share["low_high"] > share["top_scaled"]).all()


def test_outcomes_agree_with_the_demo_truth(decisions, panel):
    labelled = decisions.filter(pl.col("outcome_churned").is_not_null())
    assert labelled.height == decisions.height  # a decision one week before term end is always in the horizon
    assert (labelled["outcome_churned"] == labelled["truth_churned"].cast(pl.Int8)).all()
    churned = labelled.filter(pl.col("outcome_churned") == 1)
    assert churned.height >= 20
    assert (churned["outcome_days_to_churn"] > 0).all()
    # a company that churned is no customer at or after its churn date
    ends = churned.select("company_id", pl.col("term_end").alias("churn_end"))
    later = panel.join(ends, on="company_id").filter(pl.col("as_of") >= pl.col("churn_end"))
    restarted = panel.join(ends, on="company_id").filter(pl.col("term_end") > pl.col("churn_end"))
    assert later.height == restarted.height  # rows after a churn only in a later, newly won term
    # expansions: the demo expands healthy accounts
    assert panel["outcome_expanded"].drop_nulls().sum() > 0
    assert panel.filter(pl.col("outcome_expanded") == 1)["seat_utilisation"].mean() > panel["seat_utilisation"].mean()


def test_value_signals_separate_churn_and_activity_signals_barely(decisions):
    """On the demo's ground truth: value signals point the expected way, activity signals carry little."""
    y = decisions["truth_churned"].to_numpy()
    p_churn = decisions["truth_p_churn"].to_numpy()
    healthy_auc, rho = {}, {}
    for name, signal in SIGNALS.items():
        if not signal.point_source or name not in decisions.columns:
            continue
        x = decisions[name].to_numpy().astype(float)
        ok = ~np.isnan(x)
        auc = roc_auc_score(y[ok], x[ok])
        healthy_auc[name] = 1 - auc if signal.direction > 0 else auc  # AUC of "less healthy -> churn"
        rho[name] = spearmanr(x[ok], p_churn[ok])[0] * signal.direction  # < 0: healthier, lower true risk
    value = [n for n in healthy_auc if SIGNALS[n].family == "value"]
    activity = [n for n in healthy_auc if SIGNALS[n].family == "activity"]
    assert healthy_auc["core_depth"] > 0.7 and healthy_auc["seat_utilisation"] > 0.65
    assert healthy_auc["core_depth_trend"] > 0.6
    assert all(rho[n] < 0 for n in value), rho  # every value signal points the expected way
    assert min(rho[n] for n in value) < -0.3
    assert all(abs(rho[n]) < 0.25 for n in activity), rho
    assert all(abs(healthy_auc[n] - 0.5) < 0.25 for n in activity), healthy_auc
    assert max(healthy_auc[n] for n in value) > max(max(healthy_auc[n], 1 - healthy_auc[n]) for n in activity) + 0.05


def assert_pandas_reference_agrees(folder: Path, snapshot, dates: list[datetime]) -> None:
    """The pandas reference (benchmarks/pandas_reference.py) on the snapshot's files gives the panel's rows and
    numbers at `dates`."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from pandas_reference import panel_pandas, read_tables
    finally:
        sys.path.remove(str(BENCHMARKS))
    ours = build_panel(snapshot, as_of_dates=dates).to_pandas()
    tables, manifest = read_tables(folder)
    reference = panel_pandas(tables, manifest, as_of_dates=[pd.Timestamp(d) for d in dates])
    assert len(ours) == len(reference) > 500
    merged = ours.merge(reference, on=["as_of", "company_id"], suffixes=("", "_ref"), validate="one_to_one")
    assert len(merged) == len(ours)
    compared = 0
    for column in reference.columns:
        if column in ("as_of", "company_id") or column not in ours.columns:
            continue
        a, b = merged[column], merged[f"{column}_ref"]
        if a.dtype.kind in "fiub" or b.dtype.kind in "fiub":
            a, b = a.astype(float).to_numpy(), b.astype(float).to_numpy()
            assert np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), column
        else:
            assert ((a == b) | (a.isna() & b.isna())).all(), column
        compared += 1
    assert compared >= len(SIGNALS) + 8


def test_pandas_reference_gives_the_same_numbers(small_demo, demo):
    last = default_as_of_dates(demo)[-1]
    assert_pandas_reference_agrees(small_demo, demo, [last - timedelta(weeks=w) for w in (0, 1, 9, 40, 77, 120)])


def test_pandas_reference_gives_the_same_numbers_on_a_messy_export(small_demo, tmp_path):
    """Dirty data the checks let through: engagements without a contact, open/reply flags or meeting kind, economic buyers
    recorded after their meetings, many rows at the same moment (tickets, surveys and usage at midnight, duplicated
    usage rows), open duplicates of renewal deals; and an as-of that is not on the weekly grid."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "messy"
    shutil.copytree(small_demo, folder)

    def some(frame: pl.DataFrame, share: float) -> pl.Series:
        return pl.Series(rng.random(frame.height) < share)

    def rewrite(table: str, change) -> None:
        path = folder / f"{table}.parquet"
        change(pl.read_parquet(path)).write_parquet(path)

    rewrite("engagements", lambda df: df.with_columns(
        *[pl.when(some(df, 0.15)).then(None).otherwise(pl.col(c)).alias(c) for c in ("contact_id", "opened", "replied")],
        pl.when(some(df, 0.3)).then(pl.col("occurred_at").dt.truncate("1d")).otherwise(pl.col("occurred_at")),
        pl.when(some(df, 0.3)).then(None).otherwise(pl.col("meeting_kind")).alias("meeting_kind"),  # kind not recorded
    ))
    created = datetime.fromisoformat(json.loads((folder / "manifest.json").read_text())["created_at"].replace("Z", "+00:00"))
    rewrite("contacts", lambda df: df.with_columns(pl.min_horizontal(
        pl.when(some(df, 0.2)).then(pl.col("created_at") + pl.duration(days=200)).otherwise(pl.col("created_at")),
        pl.lit(created, dtype=df.schema["created_at"]),
    )))
    rewrite("tickets", lambda df: df.with_columns(pl.col("created_at").dt.truncate("1d")))
    rewrite("surveys", lambda df: df.with_columns(pl.col("submitted_at").dt.truncate("1w")))
    rewrite("usage_events", lambda df: pl.concat([df, df.sample(fraction=0.1, seed=5)]).with_columns(
        pl.col("occurred_at").dt.truncate("1d")))
    rewrite("deals", lambda df: pl.concat([df, df.filter((pl.col("deal_type") == "renewal") & some(df, 0.3)).with_columns(
        pl.col("deal_id") + "-copy", pl.lit("open").alias("stage"), pl.lit(None, dtype=df.schema["close_date"]).alias("close_date"),
    )]))
    snapshot = load_snapshot(folder)
    last = default_as_of_dates(snapshot)[-1]
    dates = [last - timedelta(weeks=w) for w in (0, 1, 9, 40, 77)] + [last - timedelta(days=200, hours=5)]
    assert_pandas_reference_agrees(folder, snapshot, dates)


def test_single_as_of_and_off_grid_dates_match_the_weekly_panel(demo, panel):
    last = default_as_of_dates(demo)[-1]
    # three weekly grids, two dates on one of them: the grids' rows interleave in time and are sorted back
    picked = [last - timedelta(weeks=30), last - timedelta(weeks=30, days=3), last - timedelta(weeks=29, days=3),
              last - timedelta(weeks=2, days=1)]
    alone = build_panel(demo, as_of_dates=[picked[0]])
    expected = panel.filter(pl.col("as_of") == picked[0])
    assert alone.equals(expected), "a single as-of differs from the weekly panel"
    mixed = build_panel(demo, as_of_dates=picked)
    assert sorted(mixed["as_of"].unique().to_list()) == sorted(picked)
    assert mixed.equals(mixed.sort("as_of", "company_id")), "rows are not in as-of, then company order"
    for moment in picked[1:]:
        one = build_panel(demo, as_of_dates=[moment])
        assert mixed.filter(pl.col("as_of") == moment).equals(one)


def test_extra_columns_named_like_the_panels_own_change_nothing(demo, panel):
    """Extra columns of a portal's tables are kept, whatever their names: ones named like the panel's internal
    columns (the company code cid, the week k, value, ...) must not be taken for them."""
    dates = default_as_of_dates(demo)[-12:]
    names = ["cid", "k", "value", "rank", "delta", "week", "user", "close", "lost", "as_of", "arr_segment",
             "term_deal_id", "tenure_start", "renewal_lost", "outcome_churned", "_v0", "_time", "_key", "_packed"]
    for kind, values in (("whole numbers", lambda n: pl.Series(np.arange(n) % 37)), ("text", lambda n: pl.repeat("x", n, eager=True))):
        tables = {name: table.with_columns(values(table.height).alias(c) for c in names if c not in table.columns)
                  for name, table in demo.tables.items()}
        with_extras = build_panel(Snapshot(demo.manifest, tables), as_of_dates=dates)
        assert with_extras.equals(panel.filter(pl.col("as_of").is_in(dates))), kind


def test_a_loaded_snapshot_is_not_checked_for_its_core_events_again(demo, monkeypatch):
    """load_snapshot checks that every core event occurs; the panel built from it does not repeat the check. A
    snapshot whose usage events or core events changed since, or one built in memory, is checked."""
    import hsutils.panel as panel_module

    checked = []
    monkeypatch.setattr(panel_module, "check_core_events", lambda usage, manifest: checked.append(manifest))
    day = default_as_of_dates(demo)[-1]
    build_panel(demo, as_of_dates=[day])
    assert checked == []
    build_panel(Snapshot(demo.manifest, dict(demo.tables)), as_of_dates=[day])
    fewer = demo.tables["usage_events"].head(demo.tables["usage_events"].height - 1)
    build_panel(dataclasses.replace(demo, tables={**demo.tables, "usage_events": fewer}), as_of_dates=[day])
    one_event = dataclasses.replace(demo.manifest, core_events=demo.manifest.core_events[:1])
    build_panel(dataclasses.replace(demo, manifest=one_event), as_of_dates=[day])
    assert len(checked) == 3


def test_cli_warns_in_one_line_when_the_login_event_never_occurs(small_demo, tmp_path, capsys):
    folder = tmp_path / "renamed"
    shutil.copytree(small_demo, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "login_event": "sign_in"}))
    assert main(["panel", str(folder), "--out", str(tmp_path / "panel.parquet"), "--signals", "logins_28d"]) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith("hsutils panel: warning: table usage_events, column event: the login event 'sign_in'")
    assert len(printed.err.strip().splitlines()) == 1 and "rows" in printed.out
    assert pl.read_parquet(tmp_path / "panel.parquet")["logins_28d"].sum() == 0


def test_cli_writes_parquet_and_csv(small_demo, tmp_path, capsys):
    out = tmp_path / "panel.parquet"
    assert main(["panel", str(small_demo), "--out", str(out), "--signals", "core_depth,logins_28d"]) == 0
    written = pl.read_parquet(out)
    assert {"core_depth", "logins_28d", "outcome_churned"} <= set(written.columns)
    assert "eb_engagement" not in written.columns
    renewals = written.filter(pl.col("outcome_churned").is_not_null()).select("company_id", "term_end", "outcome_churned")
    decided = renewals.unique(["company_id", "term_end"]).height
    lost = renewals.filter(pl.col("outcome_churned") == 1).unique(["company_id", "term_end"]).height
    assert 0 < lost < decided < renewals.height  # several rows look ahead to one renewal
    assert f"{written.height:,} rows" in (printed := capsys.readouterr().out)
    assert f"{decided:,} decided renewals in the horizon ({lost:,} lost)" in printed
    csv_out = tmp_path / "sub" / "panel.csv"
    assert main(["panel", str(small_demo), "--out", str(csv_out), "--horizon-days", "60"]) == 0
    text = pl.read_csv(csv_out)
    assert text.height == written.height and text["as_of"][0].endswith("Z")
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []
    capsys.readouterr()
    folder = tmp_path / "taken.parquet"
    folder.mkdir()
    assert main(["panel", str(small_demo), "--out", str(folder), "--signals", "logins_28d"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"output {folder} is a folder; name a file")
    write_atomic(folder / "x", lambda path: path.write_text("x"))  # writers refuse a folder too
    with pytest.raises(InputError, match="is a folder; name a file"):
        write_atomic(folder, lambda path: path.write_text("x"))
    with pytest.raises(InputError, match="x is a file, not a folder"):
        write_atomic(folder / "x" / "y", lambda path: path.write_text("y"))


def _broken_copy(small_demo: Path, tmp_path: Path, **manifest_changes) -> Path:
    folder = tmp_path / "snapshot"
    shutil.copytree(small_demo, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(manifest_changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_cli_builds_a_signal_of_a_signal_module(small_demo, own_signal_module, tmp_path, capsys, monkeypatch):
    """The README's integrations_synced_28d, in a file named with --signal-module (relative to the current folder),
    is a column of the panel; without the module it is an unknown signal, with a hint at --signal-module."""
    out = tmp_path / "panel.parquet"
    command = ["panel", str(small_demo), "--out", str(out), "--signals", f"core_depth,{SIGNAL}"]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hsutils panel: error: unknown signal(s): {SIGNAL}; registered: core_depth, ")
    assert err.endswith("a signal of your own is loaded with --signal-module FILE.py (signal_modules: in the "
                        "report's params.yml)")
    monkeypatch.chdir(own_signal_module.parent)
    assert main([*command, "--signal-module", own_signal_module.name]) == 0
    panel = pl.read_parquet(out)
    assert {"core_depth", SIGNAL} <= set(panel.columns) and "eb_engagement" not in panel.columns
    assert panel[SIGNAL].null_count() == 0 and panel[SIGNAL].sum() > 0


@pytest.mark.parametrize("case", ["unknown_signal", "bad_suffix", "core_never_occurs", "missing_dir", "no_customers",
                                  "signal_module_missing", "signal_module_raises"])
def test_cli_bad_input_exits_2_with_one_line(case, small_demo, tmp_path, capsys):
    snapshot, out, extra = small_demo, tmp_path / "panel.parquet", []
    if case == "unknown_signal":
        extra = ["--signals", "core_depth,nps_score"]
    elif case == "signal_module_missing":
        extra = ["--signal-module", str(tmp_path / "my_signals.py")]
    elif case == "signal_module_raises":
        module = write_signal_module(tmp_path, "raise ValueError('no integration events in this portal')\n")
        extra = ["--signal-module", str(module), "--signals", "core_depth"]
    elif case == "bad_suffix":
        out = tmp_path / "panel.xlsx"
    elif case == "core_never_occurs":
        snapshot = _broken_copy(small_demo, tmp_path, core_events=["dashboard_exported_to_pdf"])
    elif case == "missing_dir":
        snapshot = tmp_path / "nowhere"
    elif case == "no_customers":
        snapshot = _broken_copy(small_demo, tmp_path)
        deals = pl.read_parquet(snapshot / "deals.parquet")
        deals.with_columns(pl.lit("lost").alias("stage")).write_parquet(snapshot / "deals.parquet")
    assert main(["panel", str(snapshot), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hsutils panel: error:") and "\n" not in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []
    if case == "core_never_occurs":
        assert "dashboard_exported_to_pdf" in err and "usage_events" in err
    if case == "unknown_signal":
        assert "nps_score" in err
    if case == "signal_module_missing":
        assert err == f"hsutils panel: error: signal module {extra[1]}: FileNotFoundError: no such file: {Path(extra[1]).resolve()}"
    if case == "signal_module_raises":
        assert err == f"hsutils panel: error: signal module {extra[1]}: ValueError: no integration events in this portal"


def test_bad_as_of_dates_and_horizon(demo):
    created = demo.manifest.created_at
    with pytest.raises(InputError, match="after the snapshot"):
        build_panel(demo, as_of_dates=[created + timedelta(days=1)])
    with pytest.raises(InputError, match="before the data"):
        build_panel(demo, as_of_dates=["2001-01-01"])
    with pytest.raises(InputError, match="not a date"):
        build_panel(demo, as_of_dates=["last tuesday"])
    with pytest.raises(InputError, match="horizon"):
        build_panel(demo, horizon_days=0)
    with pytest.raises(InputError, match="no as-of"):
        build_panel(demo, as_of_dates=[])
    with pytest.raises(InputError, match="as-of date NaT is empty"):
        build_panel(demo, as_of_dates=[default_as_of_dates(demo)[-1], pd.NaT])
    with pytest.raises(InputError, match="as-of date None is empty"):
        build_panel(demo, as_of_dates=[None])
    for missing in (pd.NA, [pd.NA], np.datetime64("NaT")):  # pandas' NA has no truth value: no TypeError
        with pytest.raises(InputError, match="as-of date .* is empty"):
            build_panel(demo, as_of_dates=missing)
    with pytest.raises(InputError, match="not a date"):  # a list inside the list is not one missing date
        build_panel(demo, as_of_dates=[[pd.NA]])
    with pytest.raises(InputError, match="horizon"):
        build_panel(demo, horizon_days=True)


def test_one_as_of_date_need_not_be_in_a_list_and_numpy_whole_numbers_are_days(demo, panel):
    last = default_as_of_dates(demo)[-1]
    expected = panel.filter(pl.col("as_of") == last)
    assert build_panel(demo, as_of_dates=last).equals(expected)
    assert build_panel(demo, as_of_dates=last.date().isoformat()).equals(expected)
    assert build_panel(demo, as_of_dates=np.datetime64(last.replace(tzinfo=None), "ns")).equals(expected)
    assert build_panel(demo, as_of_dates=[last], horizon_days=np.int64(90)).equals(expected)


def test_large_portals_find_the_same_customers_by_joins(demo, panel, monkeypatch):
    """Above MAX_CUSTOMER_CELLS the customer rows come from joins instead of the (week x company) array: same panel."""
    import hsutils.signals as signals

    monkeypatch.setattr(signals, "MAX_CUSTOMER_CELLS", 0)
    by_joins = build_panel(demo)
    assert by_joins.columns == panel.columns
    # expansion ARR is summed in a different order (polars groups in parallel): equal up to rounding
    assert [c for c in panel.columns if c != "arr" and not by_joins[c].equals(panel[c])] == []
    np.testing.assert_allclose(by_joins["arr"].to_numpy(), panel["arr"].to_numpy(), rtol=1e-12)


def test_usage_ids_as_text_or_dictionary_codes_give_the_same_panel(small_demo, demo, panel):
    """Parquet snapshots store usage ids as dictionary columns and load them as Categorical; a usage table held as
    text (e.g. assembled in memory) takes the text path of the encoding and gives the same panel."""
    import pyarrow.parquet as pq

    from hsutils.snapshot import Snapshot

    stored = pq.read_schema(small_demo / "usage_events.parquet")
    assert all(str(stored.field(c).type).startswith("dictionary") for c in ("company_id", "user_id", "event"))
    usage = demo["usage_events"]
    assert all(usage.schema[c] == pl.Categorical for c in ("company_id", "user_id", "event"))
    as_text = usage.with_columns(pl.col("company_id", "user_id", "event").cast(pl.String))
    text_panel = build_panel(Snapshot(demo.manifest, {**demo.tables, "usage_events": as_text}))
    assert text_panel.equals(panel)


def test_snapshot_without_usage_events_gives_unknown_usage_signals_and_the_rest_unchanged(small_demo, panel, tmp_path,
                                                                                         capsys):
    """A portal pulled without a usage export: usage_events has no rows and core_events may be empty. The snapshot
    loads, the usage signals and active_seats are empty (unknown, not 0) with a one-line warning, and every other
    column equals the panel built with usage."""
    folder = _broken_copy(small_demo, tmp_path, core_events=[])
    pl.read_parquet(folder / "usage_events.parquet").head(0).write_parquet(folder / "usage_events.parquet")
    out = tmp_path / "panel.parquet"
    assert main(["validate", str(folder)]) == 0
    assert main(["panel", str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "usage_events has no rows" in err and "seat_utilisation" in err
    without = pl.read_parquet(out)
    usage_columns = [name for name, signal in SIGNALS.items() if signal.reads and "usage_events" in signal.reads]
    assert {"core_depth", "seat_utilisation", "logins_28d", "feature_breadth_28d"} <= set(usage_columns)
    unknown = [*usage_columns, "active_seats"]
    assert without.select(pl.col(unknown).null_count()).row(0) == (without.height,) * len(unknown)
    assert without.drop(unknown).equals(panel.drop(unknown))


def _panel_warnings(snapshot, dates: list[datetime] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """The panel of `snapshot` at `dates` (default: the last 3 weeks) and the warnings building it gave."""
    import warnings

    dates = dates or default_as_of_dates(snapshot)[-3:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_panel(snapshot, as_of_dates=dates)
    return built, [str(w.message) for w in caught]


def test_a_company_without_arr_is_never_high_touch(demo):
    """A portal that leaves deal amounts at 0 (most, or all, of its companies): ARR 0 is no high-touch account,
    and when no contract term records ARR a warning says arr_segment cannot tell accounts apart."""
    deals = demo["deals"]
    paying = deals["company_id"].unique().sort().head(30).implode()
    mostly_zero = deals.with_columns(arr=pl.when(pl.col("company_id").is_in(paying)).then("arr").otherwise(0.0))
    built, messages = _panel_warnings(Snapshot(demo.manifest, {**demo.tables, "deals": mostly_zero}))
    assert built.filter(pl.col("arr_segment") == "high_touch")["arr"].min() > 0
    assert not any("ARR" in m for m in messages)
    built, messages = _panel_warnings(Snapshot(demo.manifest, {**demo.tables, "deals": deals.with_columns(arr=0.0)}))
    assert set(built["arr_segment"]) == {"scaled"}
    assert [m for m in messages if "ARR" in m and "arr_segment" in m]


def test_a_core_event_the_product_stopped_sending_is_named(demo):
    """A value-moment event renamed in the product a year ago: it still occurs (old rows), so the snapshot is valid,
    but it no longer counts at the recent as-of dates; a warning names it and its last day."""
    created = demo.manifest.created_at
    usage = demo["usage_events"].with_columns(pl.col("event").cast(pl.String))
    renamed = usage.with_columns(event=pl.when((pl.col("event") == "workflow_run")
                                               & (pl.col("occurred_at") >= created - timedelta(days=365)))
                                 .then(pl.lit("workflow_run_v2")).otherwise("event"))
    _, messages = _panel_warnings(Snapshot(demo.manifest, {**demo.tables, "usage_events": renamed}))
    stopped = [m for m in messages if "'workflow_run'" in m]
    assert len(stopped) == 1 and "last occurs" in stopped[0] and "core_events" in stopped[0]
    assert "report_published" not in stopped[0]
    _, messages = _panel_warnings(demo)
    assert not [m for m in messages if "last occurs" in m]


def test_support_and_buyer_signals_without_their_data_are_named(demo):
    """A portal without a help desk (no tickets) and without an economic-buyer label on its contacts: the support
    and economic-buyer signals read the same in every row, and one warning each says why."""
    contacts = demo["contacts"].with_columns(
        role=pl.when(pl.col("role") == "economic_buyer").then(pl.lit("champion")).otherwise("role"))
    tables = {**demo.tables, "tickets": demo["tickets"].head(0), "contacts": contacts}
    built, messages = _panel_warnings(Snapshot(demo.manifest, tables))
    assert built["ticket_volume_90d"].unique().to_list() == [0.0]
    assert built["eb_days_since_touch"].unique().to_list() == [365.0]
    tickets = [m for m in messages if "table tickets has no rows" in m]
    assert len(tickets) == 1 and "support_negative_share" in tickets[0] and "ticket_volume_90d" in tickets[0]
    buyers = [m for m in messages if "economic_buyer" in m]
    assert len(buyers) == 1 and "eb_engagement" in buyers[0] and "eb_days_since_touch" in buyers[0]
    _, messages = _panel_warnings(demo)
    assert not [m for m in messages if "has no rows" in m or "economic_buyer" in m]


def test_concurrent_contract_terms_are_named(demo):
    """Two subscriptions of one company in force side by side (an add-on product on its own term): the panel reads
    one current term, so a warning names such companies instead of leaving the other term's ARR and renewal out
    silently; a renewal starting a few days before its term ends is no such overlap."""
    deals = demo["deals"]
    some = deals["company_id"].unique().sort().head(5).implode()
    add_on = deals.filter(pl.col("company_id").is_in(some) & pl.col("deal_type").is_in(["new", "renewal"])
                          & (pl.col("stage") == "won")).with_columns(
        deal_id=pl.col("deal_id") + "-addon", term_start=pl.col("term_start") + timedelta(days=120),
        term_end=pl.col("term_end") + timedelta(days=120), close_date=pl.col("close_date") + timedelta(days=120),
    ).filter(pl.col("close_date") <= demo.manifest.created_at)
    _, messages = _panel_warnings(Snapshot(demo.manifest, {**demo.tables, "deals": pl.concat([deals, add_on])}))
    overlapping = [m for m in messages if "in force at the same time" in m]
    assert len(overlapping) == 1 and "5 companies" in overlapping[0] and "-addon" in overlapping[0]
    _, messages = _panel_warnings(demo)
    assert not [m for m in messages if "in force at the same time" in m]


def test_concurrent_contract_terms_are_read_as_the_warning_says(demo):
    """Today's reading of an add-on on its own term, pinned as the concurrent-terms warning describes it: while the
    add-on is the latest-starting term in force it is current (its ARR and end, without the main term's); once the
    main term's renewal starts, that renewal is current and the add-on's ARR is not counted; the add-on's renewal
    recorded lost ends the company's rows although the main renewal still runs."""
    deals = demo["deals"]
    created = demo.manifest.created_at
    won = deals.filter(pl.col("deal_type").is_in(["new", "renewal"]) & (pl.col("stage") == "won"))
    # a main term M ending at `end`, renewed by a won term R starting exactly then that runs a year past the add-on's loss
    pairs = won.join(won.filter(pl.col("deal_type") == "renewal"), left_on=["company_id", "term_end"],
                     right_on=["company_id", "term_start"], suffix="_renewal").filter(
        (pl.max_horizontal("term_start", "close_date") < pl.col("term_end") - timedelta(days=200))
        & (pl.col("close_date_renewal") < pl.col("term_end")) & (pl.col("term_end_renewal") > pl.col("term_end") + timedelta(days=300))
        & (pl.col("term_end") + timedelta(days=260) < created)
    ).sort("company_id", "term_end")
    assert pairs.height
    main_term = pairs.row(0, named=True)
    company, end = main_term["company_id"], main_term["term_end"]
    add_on = pl.DataFrame([
        {"deal_id": "addon", "deal_type": "new", "stage": "won", "term_start": end - timedelta(days=180),
         "term_end": end + timedelta(days=180), "close_date": end - timedelta(days=190), "arr": 12345.0, "seats": 3},
        {"deal_id": "addon-renewal", "deal_type": "renewal", "stage": "lost", "term_start": end + timedelta(days=180),
         "term_end": end + timedelta(days=545), "close_date": end + timedelta(days=170), "arr": 12345.0, "seats": 3},
    ]).with_columns(company_id=pl.lit(company)).select(deals.columns).cast(deals.schema)
    dates = [d for d in default_as_of_dates(demo) if end - timedelta(days=200) <= d < end + timedelta(days=250)]
    before = build_panel(demo, as_of_dates=dates).filter(pl.col("company_id") == company)
    after, messages = _panel_warnings(Snapshot(demo.manifest, {**demo.tables, "deals": pl.concat([deals, add_on])}), dates)
    after = after.filter(pl.col("company_id") == company)
    both = before.join(after, on="as_of", how="left", suffix="_after")
    # the add-on is current: its ARR and seats instead of the main term's, its end as the renewal date
    add_on_current = both.filter(pl.col("as_of").is_between(end - timedelta(days=180), end, closed="left"))
    assert add_on_current.height >= 20
    np.testing.assert_allclose((add_on_current["arr_after"] - add_on_current["arr"]).to_numpy(), 12345.0 - main_term["arr"])
    assert (add_on_current["contracted_seats_after"] - add_on_current["contracted_seats"]).unique().to_list() == [
        3 - main_term["seats"]]
    assert (add_on_current["term_end_after"] == end + timedelta(days=180)).all()
    # the main term's renewal is current: nothing of the add-on counts, not even its lost renewal in the horizon
    renewal_current = both.filter(pl.col("as_of").is_between(end, end + timedelta(days=170), closed="left"))
    assert renewal_current.height >= 20
    for column in ("arr", "contracted_seats", "days_to_renewal", "term_end", "outcome_churned"):
        assert renewal_current[column].equals(renewal_current[f"{column}_after"].alias(column)), column
    add_on_end_ahead = renewal_current.filter(pl.col("as_of") >= end + timedelta(days=90))["outcome_churned_after"]
    assert add_on_end_ahead.len() >= 8 and add_on_end_ahead.null_count() == add_on_end_ahead.len()
    # the add-on's lost renewal ends the company's rows while the main renewal runs
    after_loss = both.filter(pl.col("as_of") >= end + timedelta(days=170))
    assert after_loss.height >= 8 and after_loss["arr_after"].null_count() == after_loss.height
    warned = [m for m in messages if "in force at the same time" in m]
    assert len(warned) == 1 and f"company_id={company}" in warned[0] and "ends the company's rows" in warned[0]

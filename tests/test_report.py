"""The quarterly report: papermill runs every notebook on a small demo portal, nbconvert renders HTML without code.

One module-scoped run (with a canary token in the environment) feeds most assertions; a second run of the same
period checks that the metrics are reproducible and that the period's folder is replaced whole.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from own_signals import ROWS_SIGNAL, ROWS_SOURCE, SIGNAL, signal_registry_restored, write_signal_module

from hsutils import narrative
from hsutils.cli import main
from hsutils.errors import InputError
from hsutils.evaluate import segment_warning, time_split
from hsutils.explore import population_stability_index
from hsutils.model import load_model
from hsutils.panel import build_panel
from hsutils.report import ReportFailed, find_previous_report, load_parameters, run_report
from hsutils.snapshot import load_snapshot

CANARY = "pat-na1-canary-7f3e9c1d-0000-4bad-beef-hsutils"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def report_run(small_demo, tmp_path_factory):
    """Run the whole report once with a canary token in the environment; return (out folder, result)."""
    out = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HUBSPOT_ACCESS_TOKEN", CANARY)
        result = run_report(small_demo, "2026Q4", out=out, progress=False)
    return out, result


def test_report_writes_every_artefact(report_run):
    out, result = report_run
    folder = out / "2026Q4"
    assert result.folder == folder
    for name in ("leadership.html", "01-signal-exploration.html", "02-fit-and-compare.html", "03-backtest.html",
                 "metrics.json", "model.yml", "scores.parquet", "parameters.yml"):
        assert (folder / name).is_file(), name
    executed = sorted(p.name for p in (folder / "notebooks").glob("*.ipynb"))
    assert executed == sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    assert not list(out.glob(".*partial")) and not (out / "2026Q4.failed").exists()


def test_leadership_html_has_figures_and_no_code(report_run, small_demo):
    out, _ = report_run
    html = (out / "2026Q4" / "leadership.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64", html)) >= 5
    body = re.sub(r"<style.*?</style>|<script.*?</script>", "", html, flags=re.S)
    assert "hl-ipython3" not in body and "In&nbsp;[" not in body  # no code input, no prompts
    for code_fragment in ("import ", "narrative.", "figures.", "Traceback", "snapshot_dir ="):
        assert code_fragment not in body, code_fragment
    assert "Customer health: 2026Q4 recalibration" in html
    assert "At risk today" in html and "Expansion candidates" in html
    # the small demo has enough churns in the test period for the figures; only its points were fitted on fewer
    # than 30 churned accounts, and the page says so once
    fitted = next(r for r in json.loads((out / "2026Q4" / "comparison.json").read_text())["table"]
                  if r["model"] == "fitted" and r["segment"] == "all")
    assert fitted["train_churned_companies"] < 30
    assert html.count("rely on") == 1
    assert f"rely on this fit:</strong> it rests on only {fitted['train_churned_companies']} churned accounts" in html
    names = load_snapshot(small_demo).manifest.owner_names
    shown = {cell for cell in re.findall(r"<td[^>]*>([^<]*)</td>", html)}
    assert shown & set(names.values()) and not shown & set(names)  # the lists name the CS owners, not their ids
    at_risk = int((pd.read_parquet(out / "2026Q4" / "scores.parquet")["band"] == "At risk").sum())
    assert at_risk > narrative.ACCOUNT_LIST_LIMIT  # the list shows some of them, and says so above it
    assert f"<caption>The {narrative.ACCOUNT_LIST_LIMIT} largest of {at_risk} accounts At risk, by ARR.</caption>" in html
    arr_sits = table_cells(html[html.index("Where the ARR sits"):html.index("At-risk accounts, largest ARR first")])
    assert arr_sits and not any(re.fullmatch(r"\d+\.\d+", cell) for cell in arr_sits)  # median scores in whole points


def page_text(html: str) -> str:
    """What a reader sees of a rendered page: the text without styles, scripts, images and tags."""
    body = re.sub(r"<style.*?</style>|<script.*?</script>|<img[^>]*>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).replace("&amp;", "&")


def table_cells(html: str) -> list[str]:
    """The text of every table cell of a rendered page."""
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", html, flags=re.S)]


def test_analyst_pages_show_no_nan_cells(report_run):
    out, _ = report_run
    for name in ("01-signal-exploration.html", "02-fit-and-compare.html", "03-backtest.html"):
        cells = table_cells((out / "2026Q4" / name).read_text(encoding="utf-8"))
        assert cells and not [c for c in cells if c.lower() in ("nan", "none")], name


# ---- the held-out AUC in plain words ------------------------------------------------------------------------------
def one_account_summary(threshold_text: str, moves: pd.DataFrame | None = None, **kwargs: Any) -> str:
    """The leadership summary of a quarter with one at-risk account, a PASS verdict and AUC 0.91 on 400 churns;
    `moves` the points change (core_depth 25 -> 30 when None), `kwargs` passed on to leadership_summary."""
    scores = pd.DataFrame({"band": ["At risk"], "arr": [1_000.0], "expansion_candidate": [False],
                           "days_to_renewal": [30.0], "health_score": [40.0]})
    drift = narrative.Drift(0.01, "13 weeks earlier", np.array([40.0]), np.array([41.0]))
    if moves is None:
        moves = narrative.points_change({"core_depth": 30.0}, {"core_depth": 25.0}, "field_preset")
    return narrative.leadership_summary("2026Q4", comparison_table(400, (0.91, 0.96)), "PASS.", threshold_text,
                                        scores, drift, moves, None, 90, "2026-02-01", **kwargs)


def at_risk_line(page: str) -> str:
    """The summary's 'Where to draw the At-risk line' bullet."""
    return next(line for line in page.splitlines() if "Where to draw the At-risk line" in line)


def comparison_table(churns: int, auc_interval: tuple[float | None, float | None]) -> pd.DataFrame:
    """A comparison table's "all" rows as comparison.json holds them, with the comparison's own warning."""
    rows = []
    for model, auc in (("fitted", 0.94), ("seed", 0.81), ("40-30-30", 0.66), ("boosting", 0.9)):
        low, high = auc_interval if model == "fitted" else (auc - 0.05, auc + 0.05)
        rows.append({"model": model, "segment": "all", "rows": 4000, "churns": churns * 13,
                     "churned_companies": churns, "auc": auc, "auc_low": low, "auc_high": high,
                     "warning": segment_warning(500, churns, 13, [low, high])})
    return pd.DataFrame(rows)


def leadership_page(table: pd.DataFrame, verdict_churned: int | None = None, verdict_unscored: int | None = None,
                    verdict_text: str = "PASS: the score predicts churn.", before_scored_weeks: int | None = None) -> str:
    scores = pd.DataFrame({"band": ["At risk", "Healthy"], "arr": [10_000.0, 50_000.0],
                           "expansion_candidate": [False, True], "days_to_renewal": [30.0, 200.0],
                           "health_score": [40.0, 90.0]})
    drift = narrative.Drift(0.01, "13 weeks earlier", np.array([40.0, 90.0]), np.array([41.0, 89.0]))
    return narrative.leadership_summary(
        "2026Q4", table, verdict_text, "Draw the line at 55.", scores, drift,
        narrative.points_change({"core_depth": 30.0}, {"core_depth": 25.0}, "field_preset"), None, 90, "2026-02-01",
        verdict_churned=verdict_churned, verdict_unscored=verdict_unscored,
        verdict_before_scored_weeks=before_scored_weeks,
    )


@pytest.mark.parametrize(
    ("churns", "interval", "caution"),
    [
        (5, (0.62, 0.99), "it rests on only 5 accounts that churned in the test period"),  # 65 churned rows
        (1, (None, None), "it rests on only 1 account that churned in the test period"),
        (5, (0.91, 0.96), "it rests on only 5 accounts that churned"),  # a narrow range, but 5 accounts
        (400, (0.70, 0.95), "could lie anywhere from 0.70 to 0.95"),  # enough churns, but a wide 95% range
        (400, (0.91, 0.96), None),
    ],
)
def test_leadership_summary_says_when_the_auc_rests_on_too_few_churns(churns, interval, caution):
    table = comparison_table(churns, interval)
    headline = next(line for line in leadership_page(table).splitlines() if "(AUC 0.94)" in line)
    fitted_warning = table.loc[table["model"] == "fitted", "warning"].iloc[0]
    assert ("AUC not stable" in fitted_warning) == (caution is not None)  # the comparison's own rule
    if caution is None:
        assert "rely on" not in headline and "rests on" not in headline
    else:
        assert caution in headline and "rely on" in headline
        assert headline.index("(AUC 0.94)") < headline.index(caution) < headline.index("hand-set weights")


@pytest.mark.parametrize(
    ("churned", "caution"),
    [
        (1, "it rests on only 1 churned account, and a reliable verdict needs at least 30"),
        (29, "it rests on only 29 churned accounts, and"),
        (30, None),
        (None, None),  # a verdict without the count: nothing to say
        (0, None),  # a verdict that says itself it cannot validate: no "rests on only 0"
    ],
)
def test_leadership_summary_says_when_the_verdict_rests_on_too_few_churns(churned, caution):
    page = leadership_page(comparison_table(400, (0.91, 0.96)), verdict_churned=churned)
    verdict_line = next(line for line in page.splitlines() if "The validation step" in line)
    assert verdict_line.startswith("- **The validation step.** PASS: the score predicts churn.")
    if caution is None:
        assert "rely on" not in verdict_line and "rests on" not in verdict_line
    else:
        assert caution in verdict_line and "Too few churns to rely on this verdict" in verdict_line


def test_leadership_page_counts_the_churns_of_the_test_period_one_way():
    """The AUC line counts the accounts that churned in the test weeks (12); the verdict, quoted as the back-test
    wrote it, counts the 11 of them with a score before their term ended and names the other one. The page never
    calls 11 the accounts that churned in the test period, and says what each number counts when they do not add up."""
    verdict = ("FAIL: the score is not predictive. 45% of 11 churned accounts scored below 60 before their term "
               "ended. One more of the 12 churned accounts is not counted: it had no score 90, 60 or 30 days before "
               "its term ended (a customer for less time than that, for instance).")
    page = leadership_page(comparison_table(12, (0.6, 0.95)), 11, 1, verdict)
    headline = next(line for line in page.splitlines() if "(AUC 0.94)" in line)
    assert "in which 12 accounts churned" in headline and "rests on only 12 accounts that churned" in headline
    verdict_line = next(line for line in page.splitlines() if "The validation step" in line)
    assert "it rests on only 11 churned accounts, and a reliable verdict needs at least 30" in verdict_line
    assert set(re.findall(r"(\d+) accounts? that churned in the test period", page)) == {"12"}
    assert "The validation step counts" not in page  # 11 counted + 1 left out = the 12 of the AUC line
    apart = leadership_page(comparison_table(40, (0.91, 0.96)), 41, 0)
    assert "in which 40 accounts churned" in apart
    assert ("(The validation step counts 41 lost renewals; the 40 above are the accounts that churned in the weeks "
            "the score was judged on.)") in apart


def test_leadership_page_says_in_a_clause_why_the_verdict_counts_more_churns_than_the_auc():
    """On the 20,000-company portal the AUC line counted 1,847 churned accounts and the verdict 1,856 lost renewals,
    with a sentence on what each number counts. The 9 churned as the test period began, before any of its weeks was
    scored: the page says so in one clause, and keeps the AUC line's count as the page's count."""
    verdict = "PASS: the score predicts churn. 90% of 1,856 churned accounts scored below 60 before their term ended."
    page = leadership_page(comparison_table(1847, (0.78, 0.82)), 1856, 0, verdict, before_scored_weeks=9)
    verdict_line = next(line for line in page.splitlines() if "The validation step" in line)
    assert verdict_line.endswith(f"{verdict} (9 more than the 1,847 above: they churned as the test period began, "
                                 "before any of its weeks was scored.)")
    assert "The validation step counts" not in page and "in which 1,847 accounts churned" in page
    one = leadership_page(comparison_table(40, (0.91, 0.96)), 41, 0, before_scored_weeks=1)
    assert "(1 more than the 40 above: it churned as the test period began" in one
    other = leadership_page(comparison_table(40, (0.91, 0.96)), 42, 0, before_scored_weeks=1)
    assert "(The validation step counts 42 lost renewals;" in other  # a difference it does not explain


def playbook_rows(events: int, arr_at_risk: float, arr_saved: float) -> pd.DataFrame:
    """Two churn rules and the expansion rule, as backtest.json holds them."""
    churn = {"target": "churn", "events": events, "arr_at_risk": arr_at_risk, "arr_saved_what_if": arr_saved}
    return pd.DataFrame([churn, {**churn, "arr_at_risk": arr_at_risk / 2, "arr_saved_what_if": arr_saved / 2},
                         {"target": "expansion", "events": 7, "arr_at_risk": None, "arr_saved_what_if": None}])


@pytest.mark.parametrize(
    ("events", "arr_at_risk", "arr_saved", "says"),
    [
        (40, 200_000.0, 90_000.0, "would have protected about $90k of the $200k ARR they caught."),
        (12, 200_000.0, 90_000.0, "would have protected about $90k of the $200k ARR they caught. Too few churns to "
                                  "rely on this figure: it rests on only 12 churns, and a reliable figure needs at "
                                  "least 30. Read it as a rough indication until more renewals have been decided."),
        (0, 0.0, 0.0, "There is no what-if figure this quarter: no churn in the test period came late enough to "
                      "judge the alerts on (each needs the 90 days before it inside the test period)."),
        (3, 0.0, 0.0, "The alerts caught none of the 3 churns of the test period in time, so they would have "
                      "protected no ARR."),
    ],
)
def test_playbook_what_if_never_reads_zero_of_zero(events, arr_at_risk, arr_saved, says):
    sentence = narrative.playbook_what_if(playbook_rows(events, arr_at_risk, arr_saved), 0.71, 0.34, 90)
    assert sentence.startswith("Caught early, the field saves about 71% of accounts; reacting late, about 34%. ")
    assert sentence.replace("**", "").endswith(says) and "$0" not in sentence
    assert ("rely on" in sentence) == (0 < events < 30 and arr_at_risk > 0)  # no figure, no caution


@pytest.mark.parametrize("churns", [5, 30, 0, None])
def test_at_risk_line_says_when_it_was_chosen_on_too_few_churns(churns):
    """The At-risk line is chosen on the churns the alerts could be judged on: '100% of churns flagged' on 5 of
    them is no basis for moving the line, and the page says so as it does for the AUC and the verdict."""
    line = at_risk_line(one_account_summary("At risk below 77: 100% of churns flagged.", threshold_churns=churns))
    assert line.split(": ", 1)[1].startswith("At risk below 77: 100% of churns flagged.")
    caution = ("**Too few churns to rely on this line:** it rests on only 5 churns, and a reliable line needs at "
               "least 30. Read it as a rough indication until more renewals have been decided.")
    assert line.endswith(caution) if churns == 5 else "rely on" not in line


def test_analyst_tables_show_a_dash_where_a_measure_is_not_defined():
    table = pd.DataFrame({"segment": ["all", "high_touch"], "churns": [4, 0], "auc": [0.91543, None],
                          "brier": [0.0042, 0.0011]})
    html = narrative.for_analysts(table).to_html()
    assert table_cells(html) == ["all", "4", "0.915", "0.004", "high_touch", "0", "—", "0.001"]
    assert "— not defined for that row" in page_text(html)
    assert table["auc"].isna().iloc[1]  # the numbers are left as they are
    assert "not defined" not in narrative.for_analysts(table.dropna()).to_html()


@pytest.fixture(scope="module")
def rare_churn_report(small_demo, tmp_path_factory):
    """The report on the small demo portal with every churn of the test period but one account's turned into a
    renewal: the test period holds a handful of churns, none among high-touch accounts. It also loads the
    README's integrations_synced_28d from a signal module of the user's own (`signal_modules`)."""
    portal = tmp_path_factory.mktemp("rare_churn") / "snapshot"
    shutil.copytree(small_demo, portal)
    _, test, _ = time_split(build_panel(load_snapshot(portal)))
    churned = test.filter(pl.col("outcome_churned") == 1)
    by_company = churned.group_by("company_id").agg(pl.len(), (pl.col("arr_segment") == "scaled").all().alias("scaled"))
    kept = by_company.filter("scaled").sort("len", "company_id", descending=[True, False])["company_id"][0]
    others = churned.filter(pl.col("company_id") != kept)["company_id"].unique().to_list()
    deals = pl.read_parquet(portal / "deals.parquet")
    lost = (pl.col("deal_type") == "renewal") & (pl.col("stage") == "lost") & pl.col("company_id").is_in(others)
    deals.with_columns(pl.when(lost).then(pl.lit("won")).otherwise("stage").alias("stage")).write_parquet(
        portal / "deals.parquet")
    module = write_signal_module(portal.parent / "own")
    with signal_registry_restored():  # the report loads it here too, to refuse a bad module before any notebook
        return run_report(portal, "2026Q4", out=tmp_path_factory.mktemp("rare_churn_reports"), progress=False,
                          signal_modules=[module])


def test_report_fits_and_scores_a_signal_of_a_signal_module(rare_churn_report):
    """Every notebook loads the module in its own kernel: the panel has the signal, the candidate model names it
    and the leadership notebook scores with it; parameters.yml records the module's absolute path."""
    folder = rare_churn_report.folder
    assert SIGNAL in yaml.safe_load((folder / "model.yml").read_text())["columns"]
    assert f"points_{SIGNAL}" in pl.read_parquet(folder / "scores.parquet").columns
    recorded = yaml.safe_load((folder / "parameters.yml").read_text())["signal_modules"]
    assert len(recorded) == 1 and Path(recorded[0]).is_absolute() and Path(recorded[0]).is_file()
    assert Path(recorded[0]).parts[-2:] == ("own", "my_signals.py")


def test_rare_churn_report_says_so_and_shows_no_nan(rare_churn_report):
    table = pd.DataFrame(rare_churn_report.metrics["comparison"]["table"])
    fitted = table[(table["model"] == "fitted") & (table["segment"] == "all")].iloc[0]
    assert 0 < fitted["churned_companies"] < 30 and "AUC not stable" in fitted["warning"]
    leadership = page_text(rare_churn_report.leadership_html.read_text(encoding="utf-8"))
    headline = leadership[leadership.index("How well the score predicts churn."):leadership.index("The validation step")]
    assert f"(AUC {fitted['auc']:.2f}). Too few churns to rely on this figure: it rests on only " \
           f"{fitted['churned_companies']} account" in headline
    verdict = leadership[leadership.index("The validation step"):leadership.index("At risk today")]
    assert "Too few churns to rely on this verdict: it rests on only" in verdict
    details = rare_churn_report.metrics["backtest"]["verdict_details"]  # one count of the test period's churns
    assert f"in which {fitted['churned_companies']} account" in headline
    assert details["churned"] + details["churned_unscored"] == fitted["churned_companies"]
    assert set(re.findall(r"(\d+) accounts? that churned in the test period", leadership)) == {
        str(fitted["churned_companies"])}
    analyst = (rare_churn_report.folder / "02-fit-and-compare.html").read_text(encoding="utf-8")
    assert table.loc[table["segment"] == "high_touch", "auc"].isna().all()  # nobody churned there: no AUC
    cells = table_cells(analyst)
    assert "—" in cells and not [c for c in cells if c.lower() in ("nan", "none")]
    assert "— not defined for that row" in page_text(analyst)


def test_executed_notebooks_ran_every_code_cell(report_run):
    out, _ = report_run
    for path in (out / "2026Q4" / "notebooks").glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert code and all(c.get("execution_count") for c in code), path.name
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, path.name


def test_metrics_hold_the_comparison_and_backtest(report_run):
    out, result = report_run
    metrics = json.loads((out / "2026Q4" / "metrics.json").read_text())
    assert metrics == result.metrics
    assert set(metrics) >= {"period", "signals", "comparison", "backtest", "summary"}
    models = {row["model"] for row in metrics["comparison"]["table"]}
    assert {"fitted", "seed", "40-30-30", "logistic", "boosting"} <= models
    assert 0.5 < metrics["summary"]["held_out_auc"]["fitted"] <= 1.0
    assert metrics["backtest"]["verdict"].startswith(("PASS", "FAIL", "NOT JUDGED"))
    assert metrics["backtest"]["passed"] is {"PASS": True, "FAIL": False, "NOT": None}[
        metrics["backtest"]["verdict"].split(":")[0].split()[0]]


def test_no_token_in_any_file_written(report_run):
    out, _ = report_run
    leaks = [p for p in out.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaks == []


def test_same_inputs_give_the_same_metrics(report_run, small_demo):
    out, result = report_run
    first = (out / "2026Q4" / "metrics.json").read_bytes()
    again = run_report(small_demo, "2026Q4", out=out, progress=False)
    assert (again.folder / "metrics.json").read_bytes() == first


def test_next_quarter_compares_with_the_previous_report(report_run, small_demo):
    out, _ = report_run
    assert find_previous_report(out, "2027Q1") == out / "2026Q4"
    assert find_previous_report(out, "2026Q4") is None
    assert find_previous_report(out, "2026Q3") is None
    first_html = (out / "2026Q4" / "leadership.html").read_text(encoding="utf-8")
    assert "first report" in first_html
    nxt = run_report(small_demo, "2027Q1", out=out, progress=False)
    assert nxt.metrics["summary"]["drift_compared_with"] == "the 2026Q4 report"
    assert nxt.metrics["summary"]["psi"] == pytest.approx(0.0, abs=1e-9)  # same data, same scores
    html = nxt.leadership_html.read_text(encoding="utf-8")
    assert "What changed since 2026Q4" in html and "first report" not in html
    assert "AUC (ranking of churners, 0.5 = chance)" in html  # the metrics-change table
    cells = table_cells(html)
    auc_row = cells[cells.index("AUC (ranking of churners, 0.5 = chance)"):][:4]
    auc = nxt.metrics["summary"]["held_out_auc"]["fitted"]
    assert auc_row[1:] == [f"{auc:.3f}", f"{auc:.3f}", "0.000"]  # as many decimals as the change is rounded to


def test_metrics_change_table_shows_the_decimals_its_change_is_computed_from():
    def comparison(auc: float, brier: float) -> dict:
        return {"table": [{"model": "fitted", "segment": "all", "auc": auc, "brier": brier}]}

    previous = narrative.PreviousReport(Path("2026Q3"), "2026Q3", {}, {"comparison": comparison(0.8614, 0.0123)},
                                        None)
    table = narrative.metrics_change(comparison(0.7343, 0.0461), previous)
    cells = table_cells(narrative.for_readers(table, digits=narrative.METRICS_CHANGE_DIGITS).to_html())
    assert cells[:4] == ["AUC (ranking of churners, 0.5 = chance)", "0.734", "0.861", "-0.127"]
    assert cells[12:16] == ["Brier score (lower is better)", "0.046", "0.012", "0.034"]


def test_failed_cell_stops_the_run_and_keeps_the_notebook(small_demo, tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    book = new_notebook(cells=[new_code_cell("raise RuntimeError('the signal table is empty')")])
    book.metadata["kernelspec"] = {"name": "hsutils", "display_name": "Python (hsutils)", "language": "python"}
    nbformat.write(book, notebooks / "01-broken.ipynb")
    out = tmp_path / "reports"
    (out / "2026Q4").mkdir(parents=True)
    (out / "2026Q4" / "metrics.json").write_text("{}")
    with pytest.raises(ReportFailed) as failure:
        run_report(small_demo, "2026Q4", out=out, notebooks_dir=notebooks, progress=False)
    assert failure.value.notebook == out / "2026Q4.failed" / "notebooks" / "01-broken.ipynb"
    assert failure.value.notebook.is_file()
    assert "the signal table is empty" in str(failure.value)
    assert (out / "2026Q4" / "metrics.json").read_text() == "{}"  # the previous good report is untouched


@pytest.mark.parametrize("error", ["hsutils.errors.InputError", "hsutils.model.ModelInputError"])
def test_bad_input_found_by_a_notebook_is_a_one_line_refusal(small_demo, tmp_path, capsys, monkeypatch, error):
    module, name = error.rsplit(".", 1)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    book = new_notebook(cells=[new_code_cell(f"from {module} import {name}\nraise {name}('no churn anywhere')")])
    book.metadata["kernelspec"] = {"name": "hsutils", "display_name": "Python (hsutils)", "language": "python"}
    nbformat.write(book, notebooks / "01-refuses.ipynb")
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    out = tmp_path / "reports"
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("hsutils report:") == 1  # below the progress bar, one line
    assert err.strip().splitlines()[-1] == "hsutils report: error: 2026Q4 not reported: no churn anywhere"
    assert sorted(p.name for p in out.iterdir()) == []  # no report, no failed folder, no staging left


def test_parameters_refuse_secrets_and_unknown_keys(tmp_path):
    secret = tmp_path / "params.yml"
    secret.write_text("hubspot_token: abc\n")
    with pytest.raises(Exception, match="secret"):
        load_parameters(secret)
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("horizon: 60\n")
    with pytest.raises(Exception, match="unknown parameter"):
        load_parameters(unknown)
    good = tmp_path / "good.yml"
    good.write_text("horizon_days: 60\nn_boot: 50\n")
    assert load_parameters(good)["horizon_days"] == 60


def test_parameters_read_numbers_with_leading_zeros_as_decimal(tmp_path):
    """`horizon_days: 0120` is 120 days (YAML 1.1 reads a leading zero as octal: 80), and `segment_column: no` is the
    text no, refused in one line as no segment column (YAML 1.1 made it the boolean False)."""
    params = tmp_path / "params.yml"
    params.write_text("horizon_days: 0120\nn_boot: 1_000\ntarget_recall: .75\n")
    assert {k: load_parameters(params)[k] for k in ("horizon_days", "n_boot", "target_recall")} == {
        "horizon_days": 120, "n_boot": 1000, "target_recall": 0.75}
    params.write_text("segment_column: no\n")
    with pytest.raises(InputError, match=r"segment_column is 'no'; it must be one of the panel's segment columns"):
        load_parameters(params)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("horizon_days: 0", "horizon_days is 0; it must be a whole number of days, at least 1"),
        ("horizon_days: 90.5", "horizon_days is 90.5"),
        ("n_boot: -1", "n_boot is -1"),
        ("target_recall: 0", "target_recall is 0; it must be a share above 0 and at most 1"),
        ("target_recall: 80", "target_recall is 80"),
        ("capacity_per_owner_per_week: 0", "capacity_per_owner_per_week is 0"),
        ("save_rate_early: 1.5", "save_rate_early is 1.5; it must be a share within 0..1"),
        ("save_rate_late: .nan", "save_rate_late is nan"),
        ("segment_column: nope", "segment_column is 'nope'; it must be one of the panel's segment columns"),
        ("signals: core_depth", "signals is 'core_depth'; it must be a list of signal names"),
        ("mapping: [a.yml]", "mapping is ['a.yml']; it must be the path of a mapping file"),
        ("cutoff: March", "cutoff is 'March'; it must be a date (YYYY-MM-DD)"),
        ("signal_modules: my_signals.py", "signal_modules is 'my_signals.py'; it must be a list of Python files"),
    ],
)
def test_report_refuses_unusable_parameters_before_any_notebook(text, fragment, small_demo, tmp_path, capsys):
    params = tmp_path / "params.yml"
    params.write_text(text + "\n")
    out = tmp_path / "reports"
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out), "--params", str(params)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hsutils report: error: parameters file {params}: ")
    assert fragment in lines[0]
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "Q4-2026"], "YYYYQn"),
        (["--period", "2026Q4", "--params", "missing.yml"], "does not exist"),
        (["--period", "2026Q4", "--signal-module", "missing.py"], "signal module missing.py: FileNotFoundError: "),
    ],
)
def test_report_cli_bad_input_exits_2(small_demo, tmp_path, capsys, args, message):
    code = main(["report", str(small_demo), "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_report_cli_missing_snapshot_exits_2(tmp_path, capsys):
    code = main(["report", str(tmp_path / "nowhere"), "--period", "2026Q4", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "r" / "2026Q4").exists()


def test_report_notebooks_are_committed_clean():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata["kernelspec"]["name"] == "hsutils"
        tagged = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
                assert not re.search(r"^\s*(def|class) ", cell.source, re.M), f"{path.name} defines a function"
                assert "token" not in cell.source.lower() or "never go here" in cell.source, path.name


def test_shutil_is_not_left_holding_a_partial_folder(report_run):
    out, _ = report_run
    shutil.rmtree(out / "scratch", ignore_errors=True)
    assert not [p for p in out.iterdir() if p.name.endswith((".partial", ".previous"))]


def test_hsutils_kernel_runs_this_environment():
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("hsutils")
    assert Path(spec.argv[0]).parent == Path(sys.executable).parent  # make lab / papermill use the project venv


def test_leadership_summary_counts_one_account_in_the_singular():
    page = leadership_page(comparison_table(400, (0.91, 0.96)))  # one expansion candidate
    assert "1 healthy account (score 85 or more, 80% or more of seats in use) holds $50k ARR: route it to" in page


def test_leadership_summary_with_no_expansion_candidate_says_so_in_words():
    """A portal with no healthy account using most of its seats read '0 healthy accounts ... hold $0 ARR: route them
    to account executives'."""
    scores = pd.DataFrame({"band": ["At risk", "Healthy"], "arr": [10_000.0, 50_000.0],
                           "expansion_candidate": [False, False], "seat_utilisation": [0.3, 0.5],
                           "days_to_renewal": [30.0, 200.0], "health_score": [40.0, 80.0]})
    drift = narrative.Drift(0.01, "13 weeks earlier", np.array([40.0, 80.0]), np.array([41.0, 79.0]))
    page = narrative.leadership_summary(
        "2026Q4", comparison_table(400, (0.91, 0.96)), "PASS: the score predicts churn.", "Draw the line at 55.",
        scores, drift, narrative.points_change({"core_depth": 30.0}, {"core_depth": 25.0}, "field_preset"), None, 90,
        "2026-02-01")
    assert ("- **Expansion candidates.** No account qualifies for an expansion conversation this quarter.\n"
            in page)
    assert "0 healthy accounts" not in page and "$0 ARR" not in page


def test_first_report_drift_names_the_earlier_scores_in_plain_words():
    """'against 13 weeks earlier (2026-08-16) (population stability index ...)' read as two parentheses after a
    phrase that is no noun."""
    history = pd.DataFrame({"as_of": pd.to_datetime(["2026-08-16", "2026-11-15"] * 50, utc=True),
                            "health_score": np.linspace(40, 90, 100)})
    drift = narrative.score_drift(pd.DataFrame({"health_score": np.linspace(40, 90, 50)}), None, history)
    assert drift.compared_with == "the scores of 2026-08-16, 13 weeks earlier"
    assert drift.words.startswith("The score distribution shows no meaningful shift against the scores of "
                                  "2026-08-16, 13 weeks earlier (population stability index ")
    assert ") (" not in drift.words


def test_score_distribution_chart_shows_shares_of_accounts_and_names_its_index():
    """The chart's axis read 'share of accounts (density)' with values like 0.04, under a title quoting 'PSI'."""
    from hsutils import figures

    fig = figures.score_distribution_shift(np.array([50.0, 70.0, 90.0, 91.0]), np.array([60.0, 80.0]), "2026Q4",
                                           "the 2026Q3 report", 0.2)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "share of accounts in each 4-point band (%)"
    assert "population stability index 0.200" in fig._suptitle.get_text() and "PSI" not in fig._suptitle.get_text()
    heights = [patch.get_height() for patch in ax.patches]
    assert sum(heights) == pytest.approx(200.0)  # each distribution's bars add up to 100%


def test_comparison_chart_shows_a_score_that_ranks_worse_than_chance():
    from hsutils import figures

    table = comparison_table(400, (0.91, 0.96))
    table.loc[table["model"] == "40-30-30", ["auc", "auc_low", "auc_high"]] = [0.264, 0.21, 0.31]
    fig = figures.model_comparison_bars(table)
    low, high = fig.axes[0].get_xlim()
    assert low <= 0.21 and high == 1.0  # the 0.264 bar and its interval are inside the plot
    assert figures.model_comparison_bars(comparison_table(400, (0.91, 0.96))).axes[0].get_xlim()[0] == 0.5


def write_parameterised_notebook(folder: Path, parameters: str, code: str) -> Path:
    """A one-cell numbered notebook with a `parameters` cell, in `folder` (made here), on the hsutils kernel."""
    folder.mkdir()
    parameters_cell = new_code_cell(parameters)
    parameters_cell.metadata["tags"] = ["parameters"]
    book = new_notebook(cells=[parameters_cell, new_code_cell(code)])
    book.metadata["kernelspec"] = {"name": "hsutils", "display_name": "Python (hsutils)", "language": "python"}
    nbformat.write(book, folder / "01-check.ipynb")
    return folder


def test_report_loads_the_snapshot_with_the_mapping_parameter(small_demo_csv, tmp_path, monkeypatch, capsys):
    """A portal that is valid only through its mapping is reported with `mapping:` in params.yml, a path relative
    to the folder the command runs from (the notebooks run elsewhere)."""
    portal = tmp_path / "portal"
    shutil.copytree(small_demo_csv, portal)
    companies = pl.read_csv(portal / "companies.csv", infer_schema=False)
    companies.rename({"company_id": "Record ID"}).write_csv(portal / "companies.csv")
    (tmp_path / "mapping.yml").write_text('columns:\n  companies: {"Record ID": company_id}\n')
    (tmp_path / "params.yml").write_text("mapping: mapping.yml\n")
    notebooks = write_parameterised_notebook(
        tmp_path / "notebooks", "snapshot_dir = None\nmapping = None",
        "from hsutils.snapshot import load_snapshot\nload_snapshot(snapshot_dir, mapping=mapping)",
    )
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    monkeypatch.chdir(tmp_path)
    code = main(["report", "portal", "--period", "2026Q4", "--out", "reports", "--params", "params.yml"])
    err = capsys.readouterr().err
    assert code == 0 and "error" not in err, err
    assert (tmp_path / "reports" / "2026Q4" / "notebooks" / "01-check.ipynb").is_file()


def test_report_passes_the_signal_modules_of_params_and_command_line_to_every_notebook(small_demo, own_signal_module,
                                                                                       monkeypatch, capsys):
    """`signal_modules:` in params.yml (a path from the folder the command runs in) and `--signal-module` add up;
    the notebooks, run in another folder, get absolute paths and load them; parameters.yml records them."""
    folder = own_signal_module.parent
    write_signal_module(folder / "more", ROWS_SOURCE, name="acme.py")
    (folder / "params.yml").write_text("signal_modules: [my_signals.py]\n")
    expected = [str(own_signal_module), str(folder / "more" / "acme.py")]
    notebooks = write_parameterised_notebook(
        folder / "notebooks", "signal_modules = []",
        f"from hsutils.signals import load_signal_modules\nassert signal_modules == {expected!r}, signal_modules\n"
        f"assert load_signal_modules(signal_modules) == {[SIGNAL, ROWS_SIGNAL]!r}",
    )
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    monkeypatch.chdir(folder)
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", "reports", "--params", "params.yml",
                 "--signal-module", "more/acme.py"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert yaml.safe_load((folder / "reports" / "2026Q4" / "parameters.yml").read_text())["signal_modules"] == expected


def test_report_refuses_a_signal_module_that_fails_before_any_notebook(small_demo, tmp_path, monkeypatch, capsys):
    """A module of params.yml that raises while importing: exit 2, one line naming it, no report folder."""
    module = write_signal_module(tmp_path, "raise KeyError('integration_synced')\n")
    (tmp_path / "params.yml").write_text("signal_modules: [my_signals.py]\n")
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: pytest.fail("no notebook may run"))
    monkeypatch.chdir(tmp_path)
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", "reports", "--params", "params.yml"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"hsutils report: error: signal module {module}: KeyError: 'integration_synced'"
    assert not (tmp_path / "reports").exists()


def test_report_takes_a_cutoff_written_as_a_yaml_date(small_demo, tmp_path, monkeypatch, capsys):
    """`cutoff: 2026-03-01` (YAML reads a date) reaches the notebooks as that date; it was a traceback."""
    (tmp_path / "params.yml").write_text("cutoff: 2026-03-01\n")
    notebooks = write_parameterised_notebook(
        tmp_path / "notebooks", "cutoff = None", "assert cutoff == '2026-03-01', cutoff"
    )
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    out = tmp_path / "reports"
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out), "--params",
                 str(tmp_path / "params.yml")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["2026Q4"]


@pytest.mark.parametrize("events", [0, 4])
def test_playbook_chart_says_why_its_bars_are_empty(events):
    from hsutils import figures

    playbook = pd.DataFrame({"condition": ["score fell more than 10 points", "score above 85"],
                             "action": ["alert the CS owner", "expansion task"], "precision": [None, None],
                             "recall": [None, None], "events": [events, 0]})
    texts = [t.get_text() for t in figures.playbook_bars(playbook).axes[0].texts]
    assert any("could be judged" in text for text in texts) == (events == 0)
    # a rule whose event never happened (no expansion at all) says so on its row instead of an empty, 0%-looking row
    assert ("no event in the test period to judge this rule on" in texts) == (events > 0)
    with_targets = playbook.assign(target=["churn", "expansion"])
    texts = [t.get_text() for t in figures.playbook_bars(with_targets).axes[0].texts]
    assert ("no expansion in the test period to judge this rule on" in texts) == (events > 0)


def test_report_on_a_portal_without_product_usage_says_what_it_lacks(small_demo, tmp_path):
    """A portal pulled without a usage export: the whole report runs, the usage signals earn no points, and the
    pages say in plain words which signals had no values and why no expansion candidate can be picked."""
    portal = tmp_path / "snapshot"
    shutil.copytree(small_demo, portal)
    pl.read_parquet(portal / "usage_events.parquet").head(0).write_parquet(portal / "usage_events.parquet")
    result = run_report(portal, "2026Q4", out=tmp_path / "reports", progress=False)
    unmeasured = result.metrics["signals"]["unmeasured"]
    assert {"core_depth", "seat_utilisation", "logins_28d", "feature_breadth_28d"} <= set(unmeasured)
    points = load_model(result.folder / "model.yml").points_
    assert all(points.get(name, 0.0) == 0.0 for name in unmeasured)
    leadership = page_text(result.leadership_html.read_text(encoding="utf-8"))
    in_words = ", ".join(narrative.signal_words(name) for name in unmeasured)
    assert f"What this snapshot lacks. It holds no product usage, so {in_words} have no values" in leadership
    assert "share of seats in use" in in_words and "seat_utilisation" not in leadership
    assert leadership.count(narrative.EXPANSION_UNKNOWN) == 2  # in brief, and where the list would be
    exploration = page_text((result.folder / "01-signal-exploration.html").read_text(encoding="utf-8"))
    assert f"{in_words[:1].upper()}{in_words[1:]} have no values in this snapshot, so they are not judged." in exploration
    for name in ("01-signal-exploration.html", "02-fit-and-compare.html", "03-backtest.html"):
        cells = table_cells((result.folder / name).read_text(encoding="utf-8"))
        assert not [c for c in cells if c.lower() in ("nan", "none")], name


def test_report_with_a_signals_list_still_compares_with_the_presets(small_demo, tmp_path):
    """`signals:` in params.yml naming fewer signals than the presets read: the candidate is fitted on those alone
    and still compared with the presets (the panel holds their signals too), as `hsutils fit --signals` does; the
    report failed in 02-fit-and-compare ("panel lacks the signal(s) support_negative_trend ...")."""
    chosen = ["core_depth", "eb_engagement", "seat_utilisation"]
    params = tmp_path / "params.yml"
    params.write_text(f"signals: [{', '.join(chosen)}]\nn_boot: 20\n")
    result = run_report(small_demo, "2026Q4", out=tmp_path / "reports", parameters_file=params,
                        progress=False)
    assert set(load_model(result.folder / "model.yml").points_) <= set(chosen)
    compared = {row["model"] for row in result.metrics["comparison"]["table"]}
    assert {"fitted", "seed", "40-30-30"} <= compared


def test_leadership_summary_writes_large_counts_with_thousands_separators():
    scores = pd.DataFrame({"band": ["At risk"] * 1200 + ["Healthy"] * 1300, "arr": [10_000.0] * 2500,
                           "expansion_candidate": [False] * 1200 + [True] * 1300,
                           "days_to_renewal": [30.0] * 2500, "health_score": [40.0] * 1200 + [90.0] * 1300})
    drift = narrative.Drift(0.01, "13 weeks earlier", np.array([40.0, 90.0]), np.array([41.0, 89.0]))
    page = narrative.leadership_summary(
        "2026Q4", comparison_table(400, (0.91, 0.96)), "PASS.", "Draw the line at 55.", scores, drift,
        narrative.points_change({"core_depth": 30.0}, {"core_depth": 25.0}, "field_preset"), None, 90, "2026-02-01")
    assert "1,200 of 2,500 customers" in page and "1,200 of them" in page and "1,300 healthy accounts" in page


def test_leadership_page_names_signals_in_words_not_column_names():
    """Leadership reads 'share of seats in use', not 'seat_utilisation': in the summary, in the line on what the
    snapshot lacks and in the points table; a signal of the product's own reads as its name with spaces."""
    moves = narrative.points_change({"seat_utilisation": 31.7, "integrations_synced_28d": 8.0},
                                    {"seat_utilisation": 15.0, "eb_engagement": 25.0}, "field_preset")
    page = one_account_summary("Draw the line at 55.", moves, unmeasured=["latest_nps"], usage_rows=10)
    assert ("the fitted points move most on: economic-buyer engagement -25.0; share of seats in use +16.7; "
            "integrations synced 28d +8.0.") in page
    assert "What this snapshot lacks.** Latest NPS has no values in this snapshot" in page
    assert "_" not in page.replace("**", "")
    cells = table_cells(narrative.for_readers(narrative.points_change_for_readers(moves)).to_html())
    assert cells[:4] == ["economic-buyer engagement", "0.0", "25.0", "-25.0"]
    headers = re.findall(r"<th[^>]*>(.*?)</th>", narrative.for_readers(narrative.points_change_for_readers(moves))
                         .to_html())
    assert headers == ["Signal", "Points now", "Points before (field preset)", "Change"]


def drift_between(before: np.ndarray, now: np.ndarray, label: str) -> narrative.Drift:
    return narrative.Drift(population_stability_index(before, now), label, now, before)


def test_score_drift_on_few_accounts_is_no_alarm_unless_it_beats_chance():
    """A PSI of 0.117 between two samples of 200 scores drawn alike is sampling noise, not 'a notable shift': a
    shift counts only above what a random split of the same scores reaches one time in 20. A real shift still
    counts, on a large portal (0.115 on 3,000 accounts) and on a small one."""
    rng = np.random.default_rng(0)
    alike = drift_between(rng.normal(65, 15, 200), rng.normal(65, 15, 200), "13 weeks earlier")
    assert alike.psi == pytest.approx(0.117, abs=0.001) and alike.by_chance > alike.psi
    assert "notable" not in alike.words and "major" not in alike.words
    assert alike.words.startswith("The score distribution shows no shift beyond chance against 13 weeks earlier: its "
                                  "population stability index 0.117 is above the usual 0.1 mark, but with 200 "
                                  "accounts now and 200 then, a random split of the same scores reaches 0.")
    rng = np.random.default_rng(1)
    large = drift_between(rng.normal(65, 15, 3000), rng.normal(60, 15, 3000), "the 2026Q3 report")
    assert large.psi > 0.1 > large.by_chance
    assert f"shows a notable shift against the 2026Q3 report (population stability index {large.psi:.3f}; under 0.1 " \
           "is stable)." in large.words
    small = drift_between(rng.normal(65, 15, 200), rng.normal(50, 15, 200), "the 2026Q3 report")
    assert small.psi > small.by_chance > 0.1
    assert f"shows a major shift against the 2026Q3 report (population stability index {small.psi:.3f}; chance " \
           f"alone reaches {small.by_chance:.3f} on so few accounts)." in small.words


def test_where_the_arr_sits_names_segments_in_words():
    """The segment table and chart read 'high-touch', not 'high_touch'; a tier of the portal's own reads as it is."""
    from hsutils import figures

    scores = pd.DataFrame({"arr_segment": ["high_touch", "scaled", "scaled"], "tier": ["Enterprise", "pro", "pro"],
                           "band": ["At risk", "Healthy", "Neutral"], "arr": [90_000.0, 5_000.0, 4_000.0],
                           "health_score": [40.0, 90.0, 60.0]})
    assert list(narrative.segment_breakdown(scores)["ARR segment"]) == ["high-touch", "scaled"]
    assert list(narrative.segment_breakdown(scores, "tier")["Tier"]) == ["Enterprise", "pro"]
    ticks = [t.get_text() for t in figures.arr_by_band(scores).axes[0].get_xticklabels()]
    assert ticks == ["high-touch", "scaled"]


@pytest.mark.parametrize(("segment_column", "header", "axis"), [
    ("arr_segment", "ARR segment", "ARR segment"), ("tier", "Tier", "tier"), ("size_bucket", "Company size", "company size"),
])
def test_where_the_arr_sits_names_the_grouping_it_uses(segment_column, header, axis):
    """With segment_column tier or size_bucket the table and chart said 'segment': they name the grouping."""
    from hsutils import figures

    scores = pd.DataFrame({"arr_segment": ["high_touch", "scaled"], "tier": ["Enterprise", "pro"],
                           "size_bucket": ["200+", "1-49"], "band": ["At risk", "Healthy"], "arr": [9e4, 5e3],
                           "health_score": [40.0, 90.0]})
    assert list(narrative.segment_breakdown(scores, segment_column).columns)[0] == header
    fig = figures.arr_by_band(scores, segment_column)
    assert fig.axes[0].get_xlabel() == axis
    assert fig._suptitle.get_text() == f"Where the ARR sits: by health band and {axis}"


def test_analyst_tables_name_segments_and_their_grouping_in_words():
    table = pd.DataFrame({"model": ["fitted"] * 3, "segment": ["all", "high_touch", "scaled"], "auc": [0.8, 0.7, 0.9]})
    readable = narrative.segments_in_words(table)
    assert list(readable.columns) == ["model", "ARR segment", "auc"]
    assert list(readable["ARR segment"]) == ["all", "high-touch", "scaled"]
    assert list(narrative.segments_in_words(table.assign(segment=["all", "Enterprise", "pro"]), "tier")["tier"]) == [
        "all", "Enterprise", "pro"]
    assert narrative.segments_in_words(table[["model"]]).equals(table[["model"]])
    assert "Accounts of each company size" in narrative.segments_note("size_bucket")


@pytest.mark.parametrize(("target_recall", "capacity", "aim"), [
    (0.8, None, "Picked on past weeks for the target of flagging 80% of churns in time (the band"),
    (None, 3.0, "Picked on past weeks to keep the accounts at risk within the owners' capacity of 3 per owner a "
                "week (the band"),
    (0.8, 2.5, "Picked on past weeks to keep the accounts at risk within the owners' capacity of 2.5 per owner a "
               "week, checked against the target of flagging 80% of churns in time (the band"),
])
def test_at_risk_line_says_what_it_was_chosen_for(target_recall, capacity, aim):
    """The page always said the line was picked 'for the quarter's target of flagging most churns in time', also
    when it was chosen to keep within the owners' capacity: it says what the choice was made for."""
    line = at_risk_line(one_account_summary("At risk below 60: 2 at-risk accounts.",
                                            threshold_target_recall=target_recall, threshold_capacity=capacity))
    assert f"**Where to draw the At-risk line.** {aim}" in line
    assert "most churns" not in line and line.endswith("used today is At risk below 55): At risk below 60: 2 at-risk accounts.")


def test_at_risk_line_names_the_band_of_the_model_that_scored():
    """The At-risk line is set against the band the scores use: the page said 'below 55' whatever the model's band;
    it names the band of the model file (a per-segment model's global one), 55 only for a model without bands."""
    line = at_risk_line(one_account_summary("At risk below 35: 2 at-risk accounts.", at_risk_below=48.5))
    assert "(the band used today is At risk below 48.5): At risk below 35" in line and "55" not in line
    X = pd.DataFrame({"a": np.linspace(0, 1, 200), "b": np.tile([0.0, 1.0], 100)})
    y = (X["a"] < 0.3).astype(int)
    from hsutils.model import HealthScore, SegmentedHealthScore

    assert narrative.at_risk_band(HealthScore(at_risk=48.5).fit(X, y)) == 48.5
    segmented = SegmentedHealthScore(base=HealthScore(healthy=80.0, at_risk=62.0), segment_column="b").fit(X, y)
    assert narrative.at_risk_band(segmented) == 62.0
    assert narrative.at_risk_band(object()) == 55.0


SIZES_AS_TEXT = ["unknown", "50-199", "200-999", "1000+", "1-49"]  # "200-999" before "50-199" when sorted as text


def test_company_sizes_are_listed_by_size():
    """Segments by company size sorted as text ('1000+', '200-999', '50-199'): every list of segments puts them
    in the order of panel.SIZE_BUCKETS, the unknown size last; other segments keep their order."""
    from hsutils import explore, figures
    from hsutils.panel import SIZE_BUCKETS

    by_size = [label for _, label in SIZE_BUCKETS] + ["1000+", "unknown"]
    scores = pd.DataFrame({"size_bucket": SIZES_AS_TEXT, "band": ["At risk", "Healthy", "Neutral", "Healthy", "At risk"],
                           "arr": [1e3, 2e3, 3e3, 4e3, 5e3], "health_score": [40.0, 90.0, 60.0, 80.0, 30.0]})
    assert list(narrative.segment_breakdown(scores, "size_bucket")["Company size"]) == by_size
    ticks = [t.get_text() for t in figures.arr_by_band(scores, "size_bucket").axes[0].get_xticklabels()]
    assert ticks == by_size
    tiers = scores.assign(tier=["pro", "Enterprise", "unknown", "basic", "pro"])
    assert list(narrative.segment_breakdown(tiers, "tier")["Tier"]) == ["Enterprise", "basic", "pro", "unknown"]

    rng = np.random.default_rng(0)
    rows = 400
    panel = pl.DataFrame({
        "company_id": [f"c{i}" for i in range(rows)],
        "size_bucket": [SIZES_AS_TEXT[i % 5] for i in range(rows)],
        "core_depth": rng.normal(size=rows), "outcome_churned": [i % 4 == 0 for i in range(rows)],
    })
    exploration = explore.explore_signals(panel, ["core_depth"], segment_column="size_bucket", n_boot=0)
    assert list(exploration.segment_sentences) == by_size
    assert list(dict.fromkeys(exploration.by_segment["segment"])) == by_size


def test_analyst_tables_name_the_models_as_the_charts_do():
    """Notebook 02's comparison table showed 'fitted_by_segment' where its chart reads 'Fitted per segment'."""
    table = pd.DataFrame({"model": ["fitted", "fitted_by_segment", "boosting", "my_own"], "auc": [0.8, 0.7, 0.9, 0.6]})
    assert list(narrative.models_in_words(table)["model"]) == [
        "Fitted health score", "Fitted per segment", "Gradient boosting (ceiling)", "my_own"]
    assert narrative.models_in_words(table[["auc"]]).equals(table[["auc"]])
    notebook = json.loads((NOTEBOOKS / "02-fit-and-compare.ipynb").read_text(encoding="utf-8"))
    table_cell = next("".join(c["source"]) for c in notebook["cells"] if "comparison.table[[" in "".join(c["source"]))
    assert "narrative.models_in_words(" in table_cell


def test_analyst_tables_name_the_measures_as_the_leadership_page_does():
    """Notebook 02's comparison table showed 'pr_auc', 'log_loss', 'top_decile_lift' as headers: they read in the
    words the leadership page uses for the same measures, and ARR as money."""
    table = pd.DataFrame({"model": ["fitted"], "churned_companies": [35], "auc": [0.8], "pr_auc": [0.17],
                          "brier": [0.06], "log_loss": [0.21], "top_decile_lift": [3.6], "ece": [0.03],
                          "arr_at_risk": [312_905.18], "field_view": ["predicts churn"]})
    html = narrative.for_analysts(table).to_html()
    headers = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", html, flags=re.S)]
    assert headers == ["Model", "Churned accounts", *(narrative.METRIC_WORDS[m] for m in (
        "auc", "pr_auc", "brier")), "Log loss (lower is better)", narrative.METRIC_WORDS["top_decile_lift"],
        narrative.METRIC_WORDS["ece"], "ARR caught", "The field's view"]
    assert table_cells(html)[-2:] == ["$313k", "predicts churn"]
    assert list(table.columns)[2] == "auc"  # the table itself keeps its column names


def test_analyst_pages_show_no_column_names(report_run):
    """The analysts read notebooks 01-03 as HTML: no table header is a column name (snake_case)."""
    out, _ = report_run
    for name in ("01-signal-exploration.html", "02-fit-and-compare.html", "03-backtest.html"):
        html = (out / "2026Q4" / name).read_text(encoding="utf-8")
        headers = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", html, flags=re.S)]
        assert headers and not [h for h in headers if "_" in h], (name, headers)


def test_analyst_pages_show_no_stray_values_of_their_set_up_cells(report_run):
    """The set-up cells' last calls returned a value that the pages showed: '[]' (the signal modules loaded) and
    'PosixPath('.../.2026Q4.partial')' (the folder the report is staged in)."""
    out, _ = report_run
    for name in ("01-signal-exploration.html", "02-fit-and-compare.html", "03-backtest.html", "leadership.html"):
        text = page_text((out / "2026Q4" / name).read_text(encoding="utf-8"))
        assert "PosixPath" not in text and ".partial" not in text and " [] " not in text, name


def test_analyst_pages_name_segments_in_words(report_run):
    """Notebooks 01 and 02 showed 'high_touch' in their segment tables and sentences; they read as the leadership
    page does, under a header naming the grouping."""
    out, _ = report_run
    for name in ("01-signal-exploration.html", "02-fit-and-compare.html"):
        html = (out / "2026Q4" / name).read_text(encoding="utf-8")
        cells = table_cells(html)
        assert "high-touch" in cells and "high_touch" not in cells, name
        assert re.search(r"<th[^>]*>\s*ARR segment\s*</th>", html), name
    exploration = page_text((out / "2026Q4" / "01-signal-exploration.html").read_text(encoding="utf-8"))
    assert "high-touch: This data" in exploration and "high_touch:" not in exploration


def test_threshold_chart_speaks_of_accounts_each_owner_has_in_a_typical_week():
    """The chart's axis said 'at-risk accounts per owner per week' beside an At-risk line that speaks of the accounts
    each CS owner has in a typical week."""
    from hsutils import figures

    table = pd.DataFrame({"threshold": [40.0, 50.0], "recall": [0.5, 0.8], "flagged_per_owner_per_week": [0.4, 1.2]})
    label = "at-risk accounts each CS owner has in a typical week (average)"
    assert figures.threshold_tradeoff(table, 50.0).axes[1].get_ylabel().replace("\n", " ") == label
    assert "each account executive\n" in figures.threshold_tradeoff(table, None, owner="ae_owner_id").axes[1].get_ylabel()


def test_report_tables_write_thousands_separators():
    table = pd.DataFrame({"Segment": ["scaled"], "Accounts": [13188], "Median score": [72.04], "AUC": [0.7342]})
    assert "13,188" in narrative.for_readers(table).to_html() and "72.0" in narrative.for_readers(table).to_html()
    assert "13,188" in narrative.for_analysts(table).to_html() and "0.734" in narrative.for_analysts(table).to_html()


@pytest.mark.parametrize(("notebook", "first"), [("02-fit-and-compare", "01-signal-exploration"),
                                                 ("04-leadership-report", "01-signal-exploration")])
def test_a_later_notebook_run_alone_names_the_notebook_to_run_first(notebook, first, small_demo, tmp_path):
    """An analyst who opens notebook 02-04 on its own (JupyterLab, papermill) gets one plain message naming the
    notebook to run first, not a file-not-found traceback from deep inside polars."""
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"snapshot_dir": str(small_demo), "report_dir": str(tmp_path / "r")},
                                   kernel_name="hsutils", progress_bar=False, cwd=str(NOTEBOOKS))
    assert raised.value.ename == "InputError"
    assert f"has no {'panel.parquet' if notebook.startswith('02') else 'signals.json'}" in raised.value.evalue
    assert f"run {first} (and the notebooks after it)" in raised.value.evalue


def test_require_earlier_outputs_lists_what_is_missing(tmp_path):
    from hsutils.errors import InputError
    from hsutils.report import require_earlier_outputs

    (tmp_path / "panel.parquet").write_bytes(b"")
    assert require_earlier_outputs(tmp_path, "panel.parquet") == tmp_path
    with pytest.raises(InputError, match=r"has no model\.yml, backtest\.json: run 02-fit-and-compare \(and the"):
        require_earlier_outputs(tmp_path, "panel.parquet", "model.yml", "backtest.json")


def test_account_list_shows_a_change_that_rounds_to_zero_as_plus_zero():
    """A 30-day change of -0.4 points reads +0 in the leadership lists, never -0."""
    from hsutils import narrative

    scores = pd.DataFrame({"name": ["A", "B", "C"], "arr": [3.0, 2.0, 1.0], "health_score": [40.0, 41.0, 42.0],
                           "score_change_30d": [-0.4, 0.3, -2.6], "band": ["At risk"] * 3})
    assert narrative.account_list(scores, "at_risk")["Change (30 days)"].tolist() == ["+0", "+0", "-3"]


def test_account_lists_name_the_cs_owner_the_snapshot_knows_else_its_id_else_unassigned(small_demo_csv, tmp_path):
    """The CS owner column reads the owner's name where the snapshot records it (a HubSpot pull's
    `hubspot.owner_names`), else 'id <the id>', else 'unassigned'; a snapshot without names (a CSV export) shows the
    ids under a header saying they are ids, not a column of bare numbers under 'CS owner'."""
    scores = pd.DataFrame({"name": ["A", "B", "C", "D"], "arr": [4.0, 3.0, 2.0, 1.0], "health_score": [40.0] * 4,
                           "band": ["At risk"] * 4, "cs_owner_id": ["41234567", "41234568", None, ""]})
    names = {"41234567": "Jane Doe", "41234568": "", "999": "Someone Else"}
    assert narrative.account_list(scores, "at_risk", owner_names=names)["CS owner"].tolist() == [
        "Jane Doe", "id 41234568", "unassigned", "unassigned"]

    folder = tmp_path / "csv"
    shutil.copytree(small_demo_csv, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("hubspot", None)  # as a CSV export's manifest: no owner names
    (folder / "manifest.json").write_text(json.dumps(manifest))
    known = load_snapshot(folder).manifest.owner_names
    assert known == {}
    for owner_names in (known, {"999": "Someone Else"}):  # none of the listed owners named
        listed = narrative.account_list(scores, "at_risk", owner_names=owner_names)
        assert "CS owner" not in listed.columns
        assert listed["CS owner id"].tolist() == ["41234567", "41234568", "unassigned", "unassigned"]


def test_account_lists_call_an_account_without_a_score_30_days_earlier_new():
    """A customer that was none 30 days ago has no 30-day change: the lists say 'new', not a blank or 'nan'; on a
    snapshot too young for any account to have one, the column stays blank rather than calling every account new."""
    scores = pd.DataFrame({"name": ["A", "B", "C"], "arr": [3.0, 2.0, 1.0], "health_score": [40.0, 41.0, 42.0],
                           "score_change_30d": [np.nan, -2.6, np.nan], "band": ["At risk"] * 3})
    assert narrative.account_list(scores, "at_risk")["Change (30 days)"].tolist() == ["new", "-3", "new"]
    young = scores.assign(score_change_30d=np.nan)
    assert narrative.account_list(young, "at_risk")["Change (30 days)"].tolist() == ["", "", ""]


def test_leadership_page_names_the_model_files_band_and_owner_ids_as_ids(report_run, small_demo, tmp_path):
    """Notebook 04 run on a report whose model file sets its own At-risk band (48), for a snapshot without owner
    names: the page counts and names that band, and heads the owners' column as ids."""
    import papermill

    from hsutils.report import render_html

    out, _ = report_run
    folder = tmp_path / "2026Q4"
    shutil.copytree(out / "2026Q4", folder)
    model_file = folder / "model.yml"
    content = yaml.safe_load(model_file.read_text())
    content["bands"]["at_risk"] = 48.0
    model_file.write_text(yaml.safe_dump(content, sort_keys=False))
    snapshot = tmp_path / "snapshot"
    shutil.copytree(small_demo, snapshot)
    manifest = json.loads((snapshot / "manifest.json").read_text())
    manifest.pop("hubspot", None)
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    executed = tmp_path / "04.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "04-leadership-report.ipynb"), str(executed),
                               parameters={"snapshot_dir": str(snapshot), "report_dir": str(folder)},
                               kernel_name="hsutils", progress_bar=False, cwd=str(NOTEBOOKS))
    html = render_html(executed, tmp_path / "leadership.html").read_text(encoding="utf-8")
    text = page_text(html)
    scores = pd.read_parquet(folder / "scores.parquet")
    at_risk = int((scores["band"] == "At risk").sum())
    assert at_risk == int((scores["health_score"] < 48.0).sum()) > 0
    assert f"At risk today. {at_risk:,} of {len(scores):,} customers" in text
    assert "(the band used today is At risk below 48): " in text and "below 55" not in text
    headers = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", html, flags=re.S)]
    assert "CS owner id" in headers and "CS owner" not in headers


def test_signal_pages_caution_a_finding_on_few_churns_count_only_point_signals_and_name_signals_in_words(report_run):
    """Notebook 01's high-touch sentence rested on a handful of churned accounts without a word of caution, counted
    days to renewal (which sets urgency, not points) among the value signals, and its charts named signals by
    column; the leadership page charted and listed days to renewal at 0 points, and set the field preset's
    30/25/20/15 (90 in all) beside points out of 100."""
    out, _ = report_run
    folder = out / "2026Q4"
    signals = json.loads((folder / "signals.json").read_text())
    text = page_text((folder / "01-signal-exploration.html").read_text())
    for segment, churned in signals["segment_churned_accounts"].items():
        if churned < 30:
            sentence = text.split(f" {narrative.segment_words(segment)}: ", 1)[1].split(" Read it ", 1)[0]
            assert sentence.endswith(f"Too few churns to rely on this finding: it rests on only {churned} churned "
                                     "accounts, and a reliable finding needs at least 30.")
    assert any(n < 30 for n in signals["segment_churned_accounts"].values())  # the small demo has such a segment
    assert "of 7 value signals predict churn" in signals["field_claim"]
    assert "Days to renewal is not counted: it sets urgency rather than earning points." in signals["field_claim"]
    cells = table_cells((folder / "01-signal-exploration.html").read_text())
    assert "share of seats in use" in cells and "seat_utilisation" not in cells
    leadership = (folder / "leadership.html").read_text()
    assert "days to renewal" not in table_cells(leadership)
    points_table = leadership[leadership.index("Points before (field preset)"):].split("</table>", 1)[0]
    rows = np.array(table_cells(points_table)).reshape(-1, 4)  # signal, points now, points before, change
    assert rows[:, 1].astype(float).sum() == pytest.approx(100, abs=0.5)
    assert rows[:, 2].astype(float).sum() == pytest.approx(100, abs=0.5)


def test_signal_charts_name_signals_in_words_and_points_charts_leave_out_the_urgency_signal():
    """The decile grid, the single-signal AUC chart and the correlation map read 'share of seats in use', not
    'seat_utilisation'; a points chart leaves out a signal that earns no points and says why under it."""
    from hsutils import figures

    deciles = pd.DataFrame({"signal": ["seat_utilisation"] * 11, "cohort": [*range(1, 11), "missing"],
                            "churn_rate": [0.1] * 11})
    grid = figures.decile_churn_grid(deciles, {"seat_utilisation": "value"})
    assert grid.axes[0].get_title() == "share of seats in use (value)"
    assert [t.get_text() for t in grid.axes[0].get_xticklabels()][:2] == ["1", "2"]
    univariate = pd.DataFrame({"signal": ["seat_utilisation", "my_own_signal"], "family": ["value", None],
                               "auc": [0.3, 0.6], "auc_low": [0.2, 0.55], "auc_high": [0.4, 0.65]})
    labels = {t.get_text() for t in figures.univariate_auc_bars(univariate).axes[0].get_yticklabels()}
    assert labels == {"share of seats in use", "my own signal"}
    heat = figures.correlation_heatmap(pd.DataFrame(np.eye(2), index=["core_depth", "latest_nps"],
                                                    columns=["core_depth", "latest_nps"]))
    assert {t.get_text() for t in heat.axes[0].get_yticklabels()} == {"core-workflow depth", "latest NPS"}
    points = pd.DataFrame({"signal": ["core_depth", "days_to_renewal"], "model": "fitted", "points": [100.0, 0.0]})
    chart = figures.points_bars(points, leave_out=["days_to_renewal"])
    assert [t.get_text() for t in chart.axes[0].get_yticklabels()] == ["core-workflow depth"]
    assert [t.get_text() for t in chart.texts][1:] == [
        "Days to renewal is not shown: it sets the urgency of a score as the renewal nears rather than earning points."]
    assert len(figures.points_bars(points).texts) == 1  # the title alone


def test_points_change_leaves_out_signals_without_points_and_sets_a_preset_on_100():
    """The leadership table listed days to renewal at 0 points now and before; the preset's points (30/25/20/15)
    are compared as it scores with them, rescaled to 100."""
    from hsutils.model import preset

    before = narrative.points_of_100(preset("seed").fixed_points)
    assert sum(before.values()) == pytest.approx(100) and before["core_depth"] == pytest.approx(100 * 30 / 90)
    moves = narrative.points_change({"core_depth": 60.0, "eb_engagement": 40.0, "days_to_renewal": 0.0}, before,
                                    "field_preset", leave_out=["days_to_renewal"])
    assert "days_to_renewal" not in set(moves["signal"])
    chart = narrative.points_for_chart(moves, "2026Q4 (now)")
    assert set(chart["model"]) == {"2026Q4 (now)", "field preset (before)"} and len(chart) == 2 * len(moves)
    assert narrative.no_points_signals(object()) == [] and narrative.no_points_note([]) == ""


def test_leadership_page_says_once_which_churned_renewals_the_verdict_counts():
    """The verdict's 'The other 10 of the 137 churned accounts are not counted ...' sat beside '(9 more than the 128
    above: ...)': two sentences on counts that did not match. With the checkpoints known, one place says it."""
    from hsutils.backtest import unscored_churns

    own = unscored_churns(10, 137, (90, 60, 30))
    verdict = ("FAIL: the score is not predictive: fewer than 50% of churned accounts dropped below 60. 40% of 127 "
               f"churned accounts scored below 60 before their term ended (90 days before: 30%). {own} Recalibrate "
               "the signals or the weights.")
    line = narrative.verdict_line(verdict, 128, 127, 10, 9, (90, 60, 30))
    assert own not in line and "The other 10" not in line and "more than the 128 above" not in line
    assert line.endswith("Recalibrate the signals or the weights. The test period lost 137 renewals: the 128 accounts "
                         "above and 9 that churned as the test period began, before any of its weeks was scored. The "
                         "verdict counts the 127 of them that had a score 90, 60 or 30 days before their term ended.")
    page = leadership_page(comparison_table(128, (0.78, 0.82)), 127, 10, verdict, before_scored_weeks=9)
    assert own in page  # without the checkpoints, the verdict keeps its sentence
    table = comparison_table(128, (0.78, 0.82))
    scores = pd.DataFrame({"band": ["At risk"], "arr": [1.0], "expansion_candidate": [False],
                           "days_to_renewal": [30.0], "health_score": [40.0]})
    drift = narrative.score_drift(scores, None, None)
    summary = narrative.leadership_summary(
        "2026Q4", table, verdict, "Draw the line at 55.", scores, drift,
        narrative.points_change({"core_depth": 30.0}, {"core_depth": 25.0}, "field_preset"), None, 90, "2026-02-01",
        verdict_churned=127, verdict_unscored=10, verdict_before_scored_weeks=9, verdict_horizons=[90, 60, 30])
    assert own not in summary and line in summary
    # counts that add up, or a difference the period's start does not explain: the verdict keeps its own sentence
    assert own in narrative.verdict_line(verdict, 137, 127, 10, 0, (90, 60, 30))
    assert own in narrative.verdict_line(verdict, 120, 127, 10, 9, (90, 60, 30))


@pytest.mark.parametrize(("test_churned", "counted", "renewals", "churned"), [
    (2, 1, "1 lost renewal", "the 2 above are the accounts that churned"),
    (1, 2, "2 lost renewals", "the 1 above is the account that churned"),
])
def test_verdict_line_counts_one_renewal_and_one_account_in_the_singular(test_churned, counted, renewals, churned):
    """'The validation step counts lost renewals, 2 of them; the 1 above are the accounts that churned' and 'The
    test period lost 1 renewals': a count of one reads in the singular."""
    line = narrative.verdict_line("PASS: the score predicts churn.", test_churned, counted, 0)
    assert line.startswith(f"PASS: the score predicts churn. (The validation step counts {renewals}; {churned} in "
                           "the weeks the score was judged on.)")
    from hsutils.backtest import unscored_churns

    own = unscored_churns(1, 1, (90, 60, 30))
    began = narrative.verdict_line(f"FAIL: the score is not predictive. {own}", 0, 0, 1, 1, (90, 60, 30))
    assert "The test period lost 1 renewal:" in began and "renewals" not in began


def test_account_lists_say_when_they_show_only_the_largest_accounts():
    """The At-risk list showed the 20 largest of 204 accounts At risk under 'At-risk accounts, largest ARR first'
    without saying it left the others out; a list that shows every account says nothing more."""
    at_risk = 23
    scores = pd.DataFrame({"name": [f"A{i}" for i in range(at_risk + 2)], "arr": np.arange(at_risk + 2, 0, -1.0),
                           "health_score": [30.0] * at_risk + [90.0, 90.0], "churn_probability": 0.1,
                           "band": ["At risk"] * at_risk + ["Healthy"] * 2,
                           "expansion_candidate": [False] * at_risk + [True, True]})
    listed = narrative.account_list(scores, "at_risk")
    caption = narrative.account_list_caption(scores, "at_risk")
    assert caption == f"The {len(listed)} largest of {at_risk} accounts At risk, by ARR." and len(listed) < at_risk
    assert f"<caption>{caption}</caption>" in narrative.for_readers(listed, caption=caption).to_html()
    assert narrative.account_list_caption(scores, "at_risk", limit=1) == f"The largest of {at_risk} accounts At risk, by ARR."
    assert narrative.account_list_caption(scores, "at_risk", limit=at_risk) == ""
    assert narrative.account_list_caption(scores, "expansion") == ""
    assert narrative.account_list_caption(scores, "expansion", limit=1) == "The largest of 2 expansion candidates, by ARR."
    assert "<caption" not in narrative.for_readers(listed).to_html()


def test_segment_breakdown_gives_the_median_score_in_the_whole_points_reached():
    """The median score read '55.0' beside a page that shows 54.7 as 54, the points it has reached, as the bands
    count them: the median reads in whole points the same way."""
    scores = pd.DataFrame({"arr_segment": ["scaled"] * 2 + ["high_touch"] * 3, "arr": [1.0, 2.0, 3.0, 4.0, 5.0],
                           "health_score": [54.0, 55.4, 54.7, 90.0, 20.0], "band": ["At risk", "Healthy", "At risk",
                                                                                 "Healthy", "At risk"]})
    table = narrative.segment_breakdown(scores)
    assert dict(zip(table["ARR segment"], table["Median score"], strict=True)) == {"high-touch": "54", "scaled": "54"}
    cells = table_cells(narrative.for_readers(table).to_html())
    assert "54" in cells and not any("54." in cell or "55" in cell for cell in cells)


def test_field_claim_counts_only_signals_that_earn_points_and_cautions_on_few_churns():
    """'7 of 8 value signals predict churn' counted days to renewal; a segment's sentence resting on 6 churned
    accounts had no caution, unlike every other figure on so few churns."""
    from hsutils.explore import field_claim_sentence

    verdicts = pd.DataFrame({
        "signal": ["core_depth", "days_to_renewal", "logins_28d", "latest_nps"],
        "family": ["value", "value", "activity", "activity"],
        "data_says": ["predicts churn", "predicts churn", "little or no signal", "little or no signal"],
        "separation": [0.2, 0.1, 0.01, 0.02],
    })
    sentence = field_claim_sentence(verdicts, ["feature_breadth_28d"])
    assert sentence.startswith("This data confirms the field's claim: 1 of 1 value signals predict churn, against "
                               "0 of 2 activity signals (mean distance of AUC from 0.5: value 0.20, activity 0.01).")
    assert sentence.endswith("Days to renewal is not counted: it sets urgency rather than earning points. Features "
                             "used in 28 days has no values in this snapshot, so it is not judged.")
    claim = narrative.field_claim(sentence, 6, "high-touch")
    assert claim.startswith(f"**high-touch:** {sentence} **Too few churns to rely on this finding:** it rests on "
                            "only 6 churned accounts, and a reliable finding needs at least 30.")
    assert narrative.field_claim(sentence, 30) == f"**{sentence}**"


def test_account_lists_never_show_a_score_or_risk_that_contradicts_the_band():
    """An At-risk account (score below 55) scored 54.7 read '55' in the At-risk list, and an expansion candidate's
    0.3% churn risk read '0%': the whole points shown are the points the score has reached (54.7 reads 54, as the
    band counts it), and a risk under half a percent reads '<1%'."""
    from hsutils import narrative

    scores = pd.DataFrame({"name": ["A", "B", "C"], "arr": [3.0, 2.0, 1.0], "health_score": [54.66, 85.0, 20.2],
                           "churn_probability": [0.0328, 0.003, 0.0], "band": ["At risk", "Healthy", "At risk"],
                           "expansion_candidate": [False, True, False]})
    at_risk = narrative.account_list(scores, "at_risk")
    assert at_risk["Score"].tolist() == ["54", "20"]
    assert at_risk["Churn risk"].tolist() == ["3%", "0%"]
    assert narrative.account_list(scores, "expansion")[["Score", "Churn risk"]].values.tolist() == [["85", "<1%"]]


def test_what_the_snapshot_lacks_starts_its_sentence_with_a_capital():
    """A portal without survey responses read 'What this snapshot lacks. latest NPS has no values ...'."""
    from hsutils import narrative

    assert narrative.data_gaps(["latest_nps"], usage_rows=1000).startswith("Latest NPS has no values in this snapshot")
    assert narrative.data_gaps(["latest_nps", "email_open_rate"], usage_rows=1000).startswith(
        "Latest NPS, email open rate have no values")


@pytest.mark.parametrize(("train_churned", "caution"), [
    (13, "**Too few churns to rely on this fit:** it rests on only 13 churned accounts of the weeks before 2026-02-01, "
         "and a reliable fit needs at least 30. Read it as a rough indication until more renewals have been decided."),
    (1, "it rests on only 1 churned account of the weeks before 2026-02-01"),
    (30, None),
    (None, None),  # a comparison written before the count was kept
])
def test_what_changed_says_when_the_points_were_fitted_on_too_few_churns(train_churned, caution):
    """A portal with four months of history fitted its points on 13 churned accounts and the page listed their
    moves (core-workflow depth +28.7) without a word of caution, though the analysts' table warned."""
    table = comparison_table(400, (0.91, 0.96))
    if train_churned is not None:
        table["train_churned_companies"] = train_churned
    page = narrative.leadership_summary(
        "2026Q4", table, "PASS.", "Draw the line at 55.",
        pd.DataFrame({"band": ["At risk"], "arr": [1.0], "expansion_candidate": [False], "days_to_renewal": [30.0],
                      "health_score": [40.0]}),
        narrative.Drift(0.01, "13 weeks earlier", np.array([40.0]), np.array([41.0])),
        narrative.points_change({"core_depth": 30.0}, {"core_depth": 25.0}, "field_preset"), None, 90, "2026-02-01")
    changed = next(line for line in page.splitlines() if "What changed" in line)
    if caution is None:
        assert "rely on" not in changed
    else:
        assert changed.index("core-workflow depth +5.0") < changed.index(caution)


def test_renewal_chart_keeps_its_legend_and_line_label_off_the_boxes():
    """On a small portal the legend (lower right) covered the whisker of the renewed accounts 30 days before, and
    the label of the 60-point line sat on the churned box 90 days before: both now sit outside the plot."""
    from hsutils import figures

    rng = np.random.default_rng(0)
    renewals = pd.DataFrame({"company_id": [f"c{i}" for i in range(60)],
                             "outcome": ["churned", "renewed", "expanded"] * 20,
                             **{f"score_{d}d": rng.uniform(1, 99, 60) for d in (90, 60, 30)}})
    fig = figures.renewal_score_distributions(renewals, (90, 60, 30), 60)
    fig.canvas.draw()
    ax = fig.axes[0]
    plot_area = ax.get_window_extent()
    assert not ax.get_legend().get_window_extent().overlaps(plot_area)
    label = next(t for t in ax.texts if "line" in t.get_text())
    assert not label.get_window_extent().overlaps(plot_area)
    assert fig.get_window_extent().contains(*label.get_window_extent().max)  # not cut off at the right edge


def test_rendered_pages_are_titled_by_their_first_heading(tmp_path):
    """Every page's browser tab read 'Notebook': the title is the page's first heading, whether a Markdown cell
    writes it (the analysts' pages) or a cell's output does (the leadership page)."""
    from nbformat.v4 import new_markdown_cell, new_output

    from hsutils.report import render_html

    leadership = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("summary()", outputs=[new_output(
        "display_data", data={"text/markdown": "# Customer health: 2026Q4 recalibration\n\n## In brief"})])])
    analysts = new_notebook(cells=[new_markdown_cell("# 01 · Which signals predict churn?\n\nThis notebook ...")])
    untitled = new_notebook(cells=[new_code_cell("x = 1")])
    titles = []
    for name, notebook in (("leadership", leadership), ("01-signal-exploration", analysts), ("03-backtest", untitled)):
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
        html = render_html(tmp_path / f"{name}.ipynb", tmp_path / f"{name}.html").read_text(encoding="utf-8")
        titles.append(re.search(r"<title>(.*?)</title>", html).group(1))
    assert titles == ["Customer health: 2026Q4 recalibration", "01 · Which signals predict churn?", "03-backtest"]


def test_playbook_chart_does_not_borrow_the_colours_of_churn_and_renewal():
    """The playbook's bars were red (events flagged in time, expansions too) and blue, the colours the chart above
    them gives churned and renewed accounts: its measures now have colours of their own."""
    from matplotlib.colors import to_hex, to_rgb

    from hsutils import figures

    playbook = pd.DataFrame({"condition": ["score below 55", "score 85 or more"], "action": ["escalate", "upgrade"],
                             "precision": [0.1, 0.3], "recall": [0.8, 0.5], "events": [10, 4],
                             "target": ["churn", "expansion"]})
    ax = figures.playbook_bars(playbook).axes[0]
    used = {to_hex(bar.get_facecolor()) for bar in ax.patches if bar.get_width() > 0}
    taken = [*figures.OUTCOME_COLOURS.values(), *figures.BAND_COLOURS.values()]
    assert len(used) == 2
    for colour in used:  # seaborn softens a palette: near one of those colours reads as that colour
        assert min(np.linalg.norm(np.subtract(to_rgb(colour), to_rgb(other))) for other in taken) > 0.25, colour


def test_playbook_chart_writes_each_share_so_a_rule_that_caught_nothing_is_not_an_empty_row():
    """On a portal with two churns to judge, the account executives' rule caught neither: its row stood empty, as
    if there were no data. Each bar now carries its share ('0%'), and a rule without events stays blank."""
    from hsutils import figures

    playbook = pd.DataFrame({"condition": ["score below 55", "high-touch, below 60", "score 85 or more"],
                             "action": ["escalate", "task", "upgrade"], "precision": [0.271, 0.0, None],
                             "recall": [0.5, 0.0, None], "events": [2, 2, 0],
                             "target": ["churn", "churn", "expansion"]})
    texts = [t.get_text() for t in figures.playbook_bars(playbook).axes[0].texts]
    assert sorted(t for t in texts if t.endswith("%")) == ["0%", "0%", "27%", "50%"]
    assert not [t for t in texts if "nan" in t.lower()]

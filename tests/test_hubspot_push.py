"""Push and rollback as a careful HubSpot admin sees them, against the loopback stand-in: properties the push must not
write, what a dry run sends, dirty scores and model files, a run stopped part-way, damaged or foreign audits."""

from __future__ import annotations

import csv
import re

import polars as pl
import pytest
import yaml
from test_hubspot_sync import FAST, companies_only, write_model, write_scores

from hsutils.errors import InputError
from hsutils.hubspot.client import HubSpotError
from hsutils.hubspot.config import load_config
from hsutils.hubspot.push import push, rollback
from hsutils.hubspot.sandbox import Faults, Sandbox, seed_portal

GROUP = "customer_health"
WRITES = ("POST /crm/v3/objects/{type}/batch/update", "POST /crm/v3/properties/{type}",
          "POST /crm/v3/properties/{type}/groups", "PATCH /crm/v3/properties/{type}/{name}")


def ids_of(n: int) -> list[str]:
    return [str(10_000 + i) for i in range(n)]


@pytest.fixture
def sandbox():
    stand_in = Sandbox(portal=seed_portal(companies_only(5), load_config()))
    stand_in.start()
    yield stand_in
    stand_in.stop()


def run_push(sandbox: Sandbox, tmp_path, apply: bool = False, model=None, scores=None, audit: str = "audit.csv",
             **kwargs):
    model = model or write_model(tmp_path / "m.yml")
    if scores is None:
        write_scores(tmp_path / "s.parquet", ids_of(5))
        scores = tmp_path / "s.parquet"
    return push(model, scores, host=sandbox.url, token=sandbox.token, apply=apply, audit=tmp_path / audit,
                **FAST, **kwargs)


def writes(sandbox: Sandbox) -> int:
    return sum(sandbox.counts[w] for w in WRITES)


def own_property(sandbox: Sandbox, name: str, kind: str = "float", **spec) -> dict:
    sandbox.portal.ensure_group("companies", GROUP, "Customer health")
    sandbox.portal.define("companies", name, kind, group=GROUP)
    prop = sandbox.portal.properties["companies"][name]
    prop.update(spec)
    return prop


def calculated(sandbox: Sandbox) -> None:
    prop = own_property(sandbox, "customer_health_score", calculated=True, fieldType="calculation_equation",
                        calculationFormula="numberofemployees")
    prop["modificationMetadata"]["readOnlyValue"] = True


def band_options(sandbox: Sandbox) -> None:
    own_property(sandbox, "customer_health_band", "enum", options=[
        {"label": o, "value": o, "hidden": False, "displayOrder": i} for i, o in enumerate(("Green", "Red"))])


def made_by_a_user(sandbox: Sandbox) -> None:
    own_property(sandbox, "customer_health_score", label="CSM gut feel score", description="Typed in by the CSM.")
    for record in sandbox.portal.objects["companies"].values():
        record["properties"]["customer_health_score"] = "42"


@pytest.mark.parametrize(("prepare", "said"), [
    (calculated, "customer_health_score is a calculated (read-only) property"),
    (band_options, "customer_health_band lacks the option(s) Healthy, Neutral, At risk"),
    (made_by_a_user, "customer_health_score (label 'CSM gut feel score') was not made by hsutils"),
])
@pytest.mark.parametrize("apply", [False, True])
def test_a_property_the_push_cannot_or_must_not_write_stops_it_before_any_write(prepare, said, apply, sandbox,
                                                                                tmp_path):
    prepare(sandbox)
    with pytest.raises(InputError, match=re.escape(said)):
        run_push(sandbox, tmp_path, apply=apply)
    assert writes(sandbox) == 0
    assert not (tmp_path / "audit.csv").exists()


def test_a_property_hsutils_made_and_an_admin_relabelled_is_still_written(sandbox, tmp_path):
    run_push(sandbox, tmp_path, apply=True)
    sandbox.portal.properties["companies"]["customer_health_score"]["label"] = "Health score (hsutils)"
    write_scores(tmp_path / "s2.parquet", ids_of(5), seed=9)
    report = run_push(sandbox, tmp_path, apply=True, scores=tmp_path / "s2.parquet")
    assert report.written == 5 and not report.failed


def test_the_dry_run_sends_no_write_and_says_what_it_would_create(sandbox, tmp_path):
    dry = run_push(sandbox, tmp_path)
    assert writes(sandbox) == 0 and set(sandbox.counts) == {
        "GET /crm/v3/properties/{type}", "GET /crm/v3/properties/{type}/groups",
        "POST /crm/v3/objects/{type}/batch/read"}
    assert not (tmp_path / "audit.csv").exists()
    text = dry.summary()
    assert "would create: property group customer_health; 11 company properties (customer_health_score, " in text
    assert "5 would change" in text and "nothing was written: run again with --apply" in text
    applied = run_push(sandbox, tmp_path, apply=True)
    assert "created: property group customer_health; 11 company properties" in applied.summary()
    again = run_push(sandbox, tmp_path)
    assert "would create" not in again.summary() and again.changes == []


@pytest.mark.parametrize(("column", "value", "said"), [
    ("health_score", float("nan"), "without company_id, as_of or health_score (empty or NaN)"),
    ("health_score", 130.0, "column health_score: 1 value outside 0..100"),
    ("churn_probability", 1.5, "column churn_probability: 1 value outside 0..1"),
    ("points_core_depth", float("inf"), "column points_core_depth: 1 value infinite"),
])
def test_scores_the_push_would_write_wrongly_are_refused(column, value, said, sandbox, tmp_path):
    frame = write_scores(tmp_path / "s.parquet", ids_of(5))
    frame.with_columns(pl.when(pl.col("company_id") == "10001").then(value).otherwise(pl.col(column))
                       .alias(column)).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=re.escape(said)):
        run_push(sandbox, tmp_path, scores=tmp_path / "bad.parquet")
    assert sum(sandbox.counts.values()) == 0


def _model_with(tmp_path, names: list[str]):
    model = yaml.safe_load(write_model(tmp_path / "m.yml").read_text())
    model["signals"] = [{"name": n, "family": "value", "points": 10} for n in names]
    (tmp_path / "named.yml").write_text(yaml.safe_dump(model, allow_unicode=True), encoding="utf-8")
    return tmp_path / "named.yml"


def test_signal_names_become_hubspot_safe_property_names(sandbox, tmp_path):
    model = _model_with(tmp_path, ["Ärger-Quote", "NPS (latest)"])
    frame = write_scores(tmp_path / "s.parquet", ids_of(5))
    frame = frame.drop([c for c in frame.columns if c.startswith("points_")]).with_columns(
        pl.lit(4.0).alias("points_Ärger-Quote"), pl.lit(7.5).alias("points_NPS (latest)"))
    frame.write_parquet(tmp_path / "named.parquet")
    report = run_push(sandbox, tmp_path, apply=True, model=model, scores=tmp_path / "named.parquet")
    assert report.written == 5
    stored = sandbox.portal.objects["companies"]["10000"]["properties"]
    assert stored["customer_health_points_arger_quote"] == "4" and stored["customer_health_points_nps_latest"] == "7.5"
    assert float(stored["customer_health_weighted_score"]) == pytest.approx(11.5)


@pytest.mark.parametrize(("names", "said"), [
    (["core_depth", "???"], "signal '???' has no HubSpot-safe property name"),
    (["Core Depth", "core_depth"], "signals 'Core Depth' and 'core_depth' would both write company property "
                                   "customer_health_points_core_depth"),
])
def test_signal_names_without_a_safe_distinct_property_name_are_refused(names, said, sandbox, tmp_path):
    with pytest.raises(InputError, match=re.escape(said)):
        run_push(sandbox, tmp_path, model=_model_with(tmp_path, names))


def test_a_push_stopped_part_way_says_so_in_one_line_and_rollback_undoes_exactly_what_was_written(tmp_path, capsys,
                                                                                               monkeypatch):
    from hsutils.cli import main
    from hsutils.hubspot import push as push_module

    real_connection = push_module.Connection
    monkeypatch.setattr(push_module, "Connection", lambda **kw: real_connection(**{**kw, "retries": 1,
                                                                                    "backoff": 0.001}))
    n = 250
    stand_in = Sandbox(portal=seed_portal(companies_only(n), load_config()), token="t")
    stand_in.portal.ensure_group("companies", GROUP, "Customer health")
    stand_in.start()
    ids = ids_of(n)
    try:
        write_model(tmp_path / "m.yml")
        write_scores(tmp_path / "old.parquet", ids[::2])
        run_push(stand_in, tmp_path, apply=True, scores=tmp_path / "old.parquet")  # every other company has a score
        before = {i: dict(stand_in.portal.objects["companies"][i]["properties"]) for i in ids}
        write_scores(tmp_path / "new.parquet", ids, seed=5)
        stand_in.reset_counts()
        stand_in.set_faults(Faults(outage_after=5))  # properties, groups, 3 batch reads, then every answer is 503
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "t")
        code = main(["push", "--model", str(tmp_path / "m.yml"), "--scores", str(tmp_path / "new.parquet"),
                     "--host", stand_in.url, "--rate", "off", "--apply", "--audit", str(tmp_path / "new.csv")])
        err = capsys.readouterr().err
        lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]
        assert code == 2 and lines[-1].startswith("hsutils push: error: push stopped part-way: 0 of 250 companies")
        assert f"(audit: {tmp_path / 'new.csv'})" in lines[-1] and "503" in lines[-1]

        stand_in.set_faults(Faults(outage_after=6))  # the second attempt writes one batch of 100, then 503
        with pytest.raises(HubSpotError, match="push stopped part-way: 100 of 250 companies written"):
            run_push(stand_in, tmp_path, apply=True, scores=tmp_path / "new.parquet", audit="new.csv")
        stand_in.set_faults(Faults())
        written = [i for i in ids if stand_in.portal.objects["companies"][i]["properties"] != before[i]]
        assert len(written) == 100

        undo = rollback(tmp_path / "new.csv", host=stand_in.url, token="t", apply=True, **FAST)
        assert undo.written == 100 and not undo.failed
        def values(record: dict) -> dict:
            return {k: v for k, v in record["properties"].items() if v is not None and k != "hs_lastmodifieddate"}

        for i in ids:  # the old values, empty ones included, are back; nothing else changed
            assert values(stand_in.portal.objects["companies"][i]) == values({"properties": before[i]})
        assert any(before[i].get("customer_health_score") is None for i in written)
        assert any(before[i].get("customer_health_score") is not None for i in written)
    finally:
        stand_in.stop()


def _audit(tmp_path, text: str | bytes):
    path = tmp_path / "audit.csv"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


HEADER = "company_id,property,old_value,new_value,changed_at,model_version,run_id,host\n"


@pytest.mark.parametrize(("content", "said"), [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not a readable CSV audit"),
    (HEADER + "10000,customer_health_score,,5", "line 2: 4 fields, not 8: the file is damaged"),
    (HEADER + "10000,customer_health_score,,5,2026-11-09T00:00:00Z,v1,r1,https://api.hubapi.com\n",
     "was written for the portal at https://api.hubapi.com, not http://127.0.0.1:"),
    (HEADER.replace(",host", "") + "990001,customer_health_score,,5,2026-11-09T00:00:00Z,v1,r1\n",
     "none of its 1 company is in the portal at http://127.0.0.1:"),
])
def test_rollback_refuses_a_damaged_or_foreign_audit_in_one_line(content, said, sandbox, tmp_path):
    with pytest.raises(InputError, match=re.escape(said)):
        rollback(_audit(tmp_path, content), host=sandbox.url, token=sandbox.token, apply=True, **FAST)
    assert writes(sandbox) == 0


def test_a_push_does_not_continue_another_hosts_audit(sandbox, tmp_path):
    _audit(tmp_path, HEADER + "10000,customer_health_score,,5,2026-11-09T00:00:00Z,v1,r1,https://api.hubapi.com\n")
    with pytest.raises(InputError, match="was written for the portal at https://api.hubapi.com"):
        run_push(sandbox, tmp_path, apply=True)
    assert writes(sandbox) == 0


def test_companies_gone_since_the_pull_are_reported_and_the_line_says_the_push_is_partial(sandbox, tmp_path, capsys,
                                                                                         recwarn):
    from hsutils.hubspot.push import _finish

    def delete_one(chunk: list[str]) -> None:  # deleted in HubSpot between the read and the write
        sandbox.portal.objects["companies"].pop("10003", None)

    frame = write_scores(tmp_path / "s.parquet", ids_of(5))
    pl.concat([frame, frame.head(1).with_columns(pl.lit("99999").alias("company_id"))]).write_parquet(
        tmp_path / "s.parquet")
    report = run_push(sandbox, tmp_path, apply=True, scores=tmp_path / "s.parquet", before_batch=delete_one)
    assert report.missing == ["99999"] and list(report.failed) == ["10003"] and report.written == 4
    assert _finish(report) == 1
    captured = capsys.readouterr()
    assert "not found in the portal: 1 (e.g. 99999)" in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hsutils push: partial: 2 of 6 companies not written (1 "
                                                         "refused by HubSpot, e.g. 10003: OBJECT_NOT_FOUND")
    assert "; 1 no longer in HubSpot, e.g. 99999); the audit" in err
    with (tmp_path / "audit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["host"] for row in rows} == {sandbox.url}
    assert [(row["company_id"], row["note"]) for row in rows if not row["property"]] == [
        ("99999", "not written: no longer in HubSpot (deleted or never there)")]


def test_merged_companies_are_named_and_their_values_follow_a_merge_only_where_they_cannot_collide(sandbox, tmp_path,
                                                                                                     capsys):
    from hsutils.hubspot.push import _finish

    frame = write_scores(tmp_path / "s.parquet", ids_of(5))
    portal = sandbox.portal
    portal.merge("companies", ["10001"], into="10000")  # into a company with a score of its own
    portal.merge("companies", ["10002", "10003"], into="20000")  # two scored companies into one new record
    portal.merge("companies", ["10004"], into="20001")  # the one scored company merged into a new record
    with pytest.warns(UserWarning, match=re.escape("3 of the 5 companies in the input cannot be written: 3 merged "
                                                   "in HubSpot into a company that cannot take their values (e.g. "
                                                   "10001 merged into 10000, which has a score of its own; 10002 "
                                                   "merged into 20000 together with 10003;")):
        dry = run_push(sandbox, tmp_path)
    assert dry.merged == {"10001": "10000", "10002": "20000", "10003": "20000", "10004": "20001"}
    assert dry.redirected == {"10004": "20001"} and sorted(dry.not_written) == ["10001", "10002", "10003"]
    assert ("merged in HubSpot since the scores were made: 4 (e.g. 10001 into 10000, 10002 into 20000, 10003 into "
            "20000); 1 would go to the company they merged into, 3 not written") in dry.summary()

    with pytest.warns(UserWarning, match="3 of the 5 companies in the input could not be written"):
        report = run_push(sandbox, tmp_path, apply=True)
    assert report.written == 2 and _finish(report) == 1
    assert "partial: 3 of 5 companies not written (3 merged, e.g. 10001 merged into 10000" in capsys.readouterr().err
    stored = portal.objects["companies"]
    row = {r["company_id"]: r for r in frame.iter_rows(named=True)}
    assert float(stored["20001"]["properties"]["customer_health_score"]) == pytest.approx(row["10004"]["health_score"])
    assert float(stored["10000"]["properties"]["customer_health_score"]) == pytest.approx(row["10000"]["health_score"])
    assert stored["20000"]["properties"].get("customer_health_score") is None
    with (tmp_path / "audit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["company_id"] for r in rows if not r["property"]) == ["10001", "10002", "10003"]
    assert {r["note"] for r in rows if r["company_id"] == "20001"} == {
        "values of company 10004, which HubSpot merged into 20001"}

    undo = rollback(tmp_path / "audit.csv", host=sandbox.url, token=sandbox.token, apply=True, **FAST)
    assert undo.written == 2 and stored["20001"]["properties"].get("customer_health_score") is None


@pytest.mark.parametrize(("room", "archived"), [
    (2, "the 2 properties this run created were archived again"),
    (1, "the 1 property this run created was archived again"),
])
def test_a_property_refused_at_the_portals_limit_archives_what_the_run_created_and_leaves_no_audit(
        room, archived, tmp_path, capsys, monkeypatch):
    from hsutils.cli import main

    stand_in = Sandbox(portal=seed_portal(companies_only(5), load_config()), token="pat-limit")
    stand_in.start()
    try:
        run_push(stand_in, tmp_path, apply=True)  # a first push made the group and its properties
        keep = {n for n in stand_in.portal.properties["companies"] if n.startswith("customer_health_")}
        model = _model_with(tmp_path, ["core_depth", "nps_latest", "csat", "logins", "seats"])
        custom = sum(not p["hubspotDefined"] for p in stand_in.portal.properties["companies"].values())
        stand_in.property_limit = custom + room  # `room` of the four new points properties fit
        new = ["customer_health_points_nps_latest", "customer_health_points_csat",
               "customer_health_points_logins"]  # the points properties this push creates, in order
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-limit")
        code = main(["push", "--model", str(model), "--scores", str(tmp_path / "s.parquet"), "--host", stand_in.url,
                     "--rate", "off", "--apply", "--audit", str(tmp_path / "refused.csv")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert err[0].startswith("hsutils push: error: push stopped before writing any company value: create "
                                 f"property {new[room]}: HubSpot answered 400")
        assert err[0].endswith(f"limit of {custom + room} custom properties for companies; {archived}: nothing is "
                               "left behind")
        now = {n for n in stand_in.portal.properties["companies"] if n.startswith("customer_health_")}
        assert now == keep and "customer_health" in stand_in.portal.groups["companies"]
        assert set(stand_in.portal.archived_properties["companies"]) == set(new[:room])
        assert not (tmp_path / "refused.csv").exists()
    finally:
        stand_in.stop()


def test_a_refused_first_push_archives_the_group_too_and_says_what_cleanup_could_not_remove(tmp_path, monkeypatch):
    stand_in = Sandbox(portal=seed_portal(companies_only(5), load_config()), token="t")
    stand_in.start()
    try:
        stand_in.property_limit = sum(not p["hubspotDefined"] for p in stand_in.portal.properties["companies"].values()) + 3
        with pytest.raises(HubSpotError, match=re.escape(
                "the 3 properties and the group customer_health this run created were archived again: nothing is left")):
            run_push(stand_in, tmp_path, apply=True)
        assert GROUP not in stand_in.portal.groups["companies"]
        assert not any(n.startswith("customer_health_") for n in stand_in.portal.properties["companies"])

        def refuse(self, params, **_):
            from hsutils.hubspot.sandbox import ApiError

            raise ApiError(403, "FORBIDDEN", "not allowed to archive")

        monkeypatch.setattr(Sandbox, "_archive_property", refuse)
        with pytest.raises(HubSpotError, match=re.escape(
                "archiving what this run created failed for customer_health_churn_probability, customer_health_band, "
                "customer_health_score, property group customer_health: archive them in HubSpot")):
            run_push(stand_in, tmp_path, apply=True)
        assert not (tmp_path / "audit.csv").exists()
    finally:
        stand_in.stop()


@pytest.mark.parametrize(("room", "archived"), [
    (0, "the group customer_health this run created was archived again: nothing is left behind"),
    (1, "the 1 property and the group customer_health this run created were archived again: nothing is left"),
])
def test_a_refused_first_push_names_what_it_archived_in_the_right_number(room, archived, tmp_path, monkeypatch):
    """A portal with no room for the push's properties read 'the 0 properties and the group customer_health this
    run created were archived again': only the group had been created."""
    stand_in = Sandbox(portal=seed_portal(companies_only(5), load_config()), token="t")
    stand_in.start()
    try:
        custom = sum(not p["hubspotDefined"] for p in stand_in.portal.properties["companies"].values())
        stand_in.property_limit = custom + room
        with pytest.raises(HubSpotError, match=re.escape(archived)):
            run_push(stand_in, tmp_path, apply=True)
        assert GROUP not in stand_in.portal.groups["companies"]

        def refuse(self, params, **_):
            from hsutils.hubspot.sandbox import ApiError

            raise ApiError(403, "FORBIDDEN", "not allowed to archive")

        monkeypatch.setattr(Sandbox, "_archive_group" if room == 0 else "_archive_property", refuse)
        left = "property group customer_health" if room == 0 else "customer_health_score, property group customer_health"
        with pytest.raises(HubSpotError, match=re.escape(
                f"archiving what this run created failed for {left}: archive {'it' if room == 0 else 'them'} in "
                f"HubSpot (Settings > Properties) or leave {'it' if room == 0 else 'them'} for the next push")):
            run_push(stand_in, tmp_path, apply=True)
    finally:
        stand_in.stop()


@pytest.mark.parametrize("content", ["", HEADER])
def test_rollback_of_an_audit_that_records_nothing_changes_nothing(content, sandbox, tmp_path):
    report = rollback(_audit(tmp_path, content), host=sandbox.url, token=sandbox.token, apply=True, **FAST)
    assert report.changes == [] and report.written == 0 and writes(sandbox) == 0
    assert "no audit file: nothing was written" in report.summary()


def test_a_push_that_changes_nothing_leaves_no_audit(sandbox, tmp_path):
    run_push(sandbox, tmp_path, apply=True)
    again = run_push(sandbox, tmp_path, apply=True, audit="again.csv")
    assert again.changes == [] and not (tmp_path / "again.csv").exists()
    assert "no audit file: nothing was written" in again.summary()


@pytest.mark.parametrize(("ids", "fmt"), [
    ([10000.0, 10001.0, 10002.0, 10003.0, 10004.0], "parquet"),
    (["10000.0", " 10001", "0010002", "10003", "10004.00"], "csv"),
])
def test_company_ids_written_as_numbers_or_padded_reach_their_companies(ids, fmt, sandbox, tmp_path):
    frame = write_scores(tmp_path / "s.parquet", ids_of(5)).with_columns(pl.Series("company_id", ids))
    path = tmp_path / f"odd.{fmt}"
    frame.write_parquet(path) if fmt == "parquet" else frame.write_csv(path)
    report = run_push(sandbox, tmp_path, apply=True, scores=path)
    assert report.missing == [] and report.written == 5


@pytest.mark.parametrize(("edit", "said"), [
    (lambda f: f.with_columns(pl.Series("company_id", ["1.00001E+4"] + ids_of(5)[1:])),
     "1 id in scientific notation, e.g. ['1.00001E+4']: a spreadsheet shortened them"),
    (lambda f: f.with_columns(pl.Series("company_id", ["1,00001E+4"] + ids_of(5)[1:])),  # a decimal-comma locale
     "1 id in scientific notation, e.g. ['1,00001E+4']: a spreadsheet shortened them"),
    (lambda f: pl.concat([f, f.head(2).with_columns(pl.col("health_score") / 2)]),
     "2 companies have rows with different values for their latest as_of, e.g. 10000, 10001"),
])
def test_scores_whose_company_ids_are_ambiguous_are_refused(edit, said, sandbox, tmp_path):
    edit(write_scores(tmp_path / "s.parquet", ids_of(5))).write_csv(tmp_path / "odd.csv")
    with pytest.raises(InputError, match=re.escape(said)):
        run_push(sandbox, tmp_path, scores=tmp_path / "odd.csv")
    assert sum(sandbox.counts.values()) == 0

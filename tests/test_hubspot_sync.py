"""HubSpot sync against the local stand-in, through the official client: round trip, push, faults, tokens."""

from __future__ import annotations

import csv
import io
import math
import random
import re
import shutil
import sys
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from hsutils.errors import InputError
from hsutils.hubspot.client import HubSpotError
from hsutils.hubspot.config import load_config
from hsutils.hubspot.pull import convert, pull
from hsutils.hubspot.push import push, rollback
from hsutils.hubspot.sandbox import (
    ASSOCIATION_TYPES,
    Faults,
    Portal,
    Sandbox,
    seed_portal,
    write_synthetic_model,
    write_synthetic_scores,
    write_usage_export,
)
from hsutils.schema import TABLES
from hsutils.snapshot import Manifest, load_snapshot, write_snapshot

FAST = {"rate": None, "backoff": 0.001}
SIGNALS = {"core_depth": 35, "eb_engagement": 30, "support_negative_trend": 20, "seat_utilisation": 15}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small demo portal (40 companies) written by the suite's demo generator."""
    from hsutils.demo import write_demo

    out = tmp_path_factory.mktemp("hs_demo") / "snapshot"
    write_demo(out, companies=40, seed=5)
    return out


@pytest.fixture(scope="module")
def snapshot(demo):
    return load_snapshot(demo)


@pytest.fixture(scope="module")
def usage(snapshot, tmp_path_factory) -> Path:
    """The demo portal's usage events as a Segment-style export (usage is not a HubSpot object)."""
    return write_usage_export(snapshot["usage_events"], tmp_path_factory.mktemp("hs_usage") / "events.csv")


@pytest.fixture(scope="module")
def config(snapshot):
    return load_config(overrides={"core_events": snapshot.manifest.core_events})


def start(snapshot, config, **kwargs) -> Sandbox:
    sandbox = Sandbox(portal=seed_portal(snapshot.tables, config, snapshot.manifest.created_at), **kwargs)
    sandbox.start()
    return sandbox


def pull_from(portal, config, usage: Path, tmp_path: Path, edits: dict | None = None):
    """Pull a stand-in portal into tmp_path / "pulled" (the stand-in runs for the pull only); the pull's result.
    `edits` {handler name: edit(params, answer)} changes what the stand-in answers, to serve a shape real HubSpot
    (or another stand-in built from its docs) gives and this one does not."""
    sandbox = Sandbox(portal=portal)
    for name, edit in (edits or {}).items():
        setattr(sandbox, name, _edited(getattr(sandbox, name), edit))
    sandbox.start()
    try:
        return pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                    progress=False, **FAST)
    finally:
        sandbox.stop()


def pull_cli(portal, tmp_path: Path, monkeypatch, *args: str) -> tuple[int, Sandbox]:
    """`hsutils pull --out tmp_path/pulled ... *args` through the command line from a stand-in of `portal` that runs
    for the pull only (token from the environment, no rate limit, no progress); the exit code and the stand-in."""
    from hsutils.cli import main

    sandbox = Sandbox(portal=portal, token="good-token")
    sandbox.start()
    try:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
        code = main(["pull", "--out", str(tmp_path / "pulled"), "--host", sandbox.url, "--rate", "off", "--quiet",
                     *args])
    finally:
        sandbox.stop()
    return code, sandbox


def _edited(handler, edit):
    def answer(**kwargs):
        status, out = handler(**kwargs)
        edit(kwargs["params"], out)
        return status, out
    return answer


def companies_only(n: int, seed: int = 0) -> dict[str, pl.DataFrame]:
    """A canonical snapshot's tables holding `n` companies, one renewal deal and one usage event each."""
    rng = random.Random(seed)
    tables = {t: pl.DataFrame(schema=spec.polars_schema) for t, spec in TABLES.items()}
    tables["companies"] = pl.DataFrame({
        "company_id": [str(10_000 + i) for i in range(n)],
        "name": [f"Company {i}" for i in range(n)],
        "created_at": [datetime(2024, 1, 1 + i % 28, tzinfo=UTC) for i in range(n)],
        "tier": [rng.choice(["starter", "pro", "enterprise"]) for _ in range(n)],
        "employees": [rng.randint(5, 5000) for _ in range(n)],
        "industry": ["Software"] * n,
        "cs_owner_id": ["501"] * n,
        "ae_owner_id": ["601"] * n,
    }, schema=TABLES["companies"].polars_schema)
    ids = tables["companies"].get_column("company_id")
    tables["deals"] = pl.DataFrame({
        "deal_id": [f"9{i}" for i in ids], "company_id": ids, "deal_type": ["renewal"] * n, "stage": ["won"] * n,
        "term_start": [datetime(2025, 1, 1, tzinfo=UTC)] * n, "term_end": [datetime(2026, 1, 1, tzinfo=UTC)] * n,
        "close_date": [datetime(2025, 12, 1, tzinfo=UTC)] * n, "arr": [12_000.0] * n, "seats": [10] * n,
    }, schema=TABLES["deals"].polars_schema)
    tables["usage_events"] = pl.DataFrame({
        "company_id": ids, "user_id": [f"u{i}" for i in ids], "occurred_at": [datetime(2025, 6, 1, tzinfo=UTC)] * n,
        "event": [("report_published", "workflow_run", "login")[i % 3] for i in range(n)], "count": [1] * n}, schema=TABLES["usage_events"].polars_schema)
    return tables


def usage_file(tables: dict[str, pl.DataFrame], tmp_path: Path) -> Path:
    return write_usage_export(tables["usage_events"], tmp_path / "usage-export.csv")


def write_model(path: Path, version: str = "2026.11-t") -> Path:
    return write_synthetic_model(path, SIGNALS, version)


def write_scores(path: Path, company_ids: list[str], seed: int = 0, version: str = "2026.11-t") -> pl.DataFrame:
    return write_synthetic_scores(path, company_ids, SIGNALS, seed, version)


def canonical(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """A table's canonical columns, sorted, timestamps at HubSpot's millisecond precision."""
    spec = TABLES[table]
    frame = frame.select(spec.column_names).with_columns(
        [pl.col(c.name).dt.truncate("1ms") for c in spec.columns if c.kind == "datetime"])
    return frame.sort(spec.column_names, nulls_last=True)


# ----- round trip ----------------------------------------------------------------------------------------------
def test_round_trip_gives_the_snapshot_back(snapshot, config, tmp_path):
    sandbox = start(snapshot, config)
    try:
        usage = write_usage_export(snapshot["usage_events"], tmp_path / "events.csv", "segment")
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                      progress=False, **FAST)
    finally:
        sandbox.stop()
    pulled = load_snapshot(tmp_path / "pulled")
    for table in TABLES:
        assert canonical(pulled[table], table).equals(canonical(snapshot[table], table)), table
    assert pulled.manifest.core_events == snapshot.manifest.core_events
    assert not result.skipped
    assert not (tmp_path / "pulled.checkpoint").exists()
    roles = pulled["contacts"].get_column("role").value_counts()
    assert set(roles.get_column("role")) >= {"economic_buyer", "champion"}  # from USER_DEFINED labels


@pytest.mark.parametrize("style", ["mixpanel", "amplitude"])
def test_usage_export_styles_and_domain_join(snapshot, config, tmp_path, style):
    """Usage exports in other tools' columns, and joined on the company domain instead of the id."""
    sandbox = start(snapshot, config)
    try:
        export = write_usage_export(snapshot["usage_events"], tmp_path / "events.parquet", style)
        if style == "amplitude":  # drop the id: the rows carry only a company domain
            raw = pl.read_parquet(export)
            domains = {r["company_id"]: r["domain"] for r in sandbox_domains(sandbox)}
            raw = raw.with_columns(pl.col("account_id").replace_strict(domains).str.to_uppercase()
                                   .alias("company_domain")).drop("account_id")
            raw.write_parquet(export)
        pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=export,
             progress=False, **FAST)
    finally:
        sandbox.stop()
    pulled = load_snapshot(tmp_path / "pulled")
    assert canonical(pulled["usage_events"], "usage_events").equals(
        canonical(snapshot["usage_events"], "usage_events"))


def sandbox_domains(sandbox: Sandbox) -> list[dict[str, str]]:
    return [{"company_id": cid, "domain": rec["properties"]["domain"]}
            for cid, rec in sandbox.portal.objects["companies"].items()]


def test_since_keeps_only_recent_activity(snapshot, config, usage, tmp_path):
    sandbox = start(snapshot, config)
    since = datetime(2026, 6, 1, tzinfo=UTC)
    try:
        pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, since=since,
             usage=usage, progress=False, **FAST)
    finally:
        sandbox.stop()
    pulled = load_snapshot(tmp_path / "pulled")
    expected = snapshot["engagements"].filter(pl.col("occurred_at") >= since).height
    assert pulled["engagements"].height == expected > 0
    assert pulled["engagements"].get_column("occurred_at").min() >= since
    assert pulled["companies"].height == snapshot["companies"].height  # companies are never cut


# ----- push ----------------------------------------------------------------------------------------------------
def test_push_dry_run_apply_pull_and_rollback(snapshot, config, usage, tmp_path):
    sandbox = start(snapshot, config)
    ids = snapshot["companies"].get_column("company_id").to_list()
    model = write_model(tmp_path / "model.yml")
    scores = write_scores(tmp_path / "scores.parquet", ids)
    audit = tmp_path / "audit.csv"
    try:
        dry = push(model, tmp_path / "scores.parquet", host=sandbox.url, token=sandbox.token, config=config, **FAST)
        assert dry.changed_companies == len(ids)
        assert sandbox.counts["POST /crm/v3/objects/{type}/batch/update"] == 0
        assert sandbox.counts["POST /crm/v3/properties/{type}"] == 0
        assert "would change" in dry.summary()
        applied = push(model, tmp_path / "scores.parquet", host=sandbox.url, token=sandbox.token, config=config,
                       apply=True, audit=audit, **FAST)
        assert applied.written == len(ids) and not applied.failed
        assert "customer_health_weighted_score = min(" in applied.calculated
        sandbox.reset_counts()
        again = push(model, tmp_path / "scores.parquet", host=sandbox.url, token=sandbox.token, config=config,
                     apply=True, audit=tmp_path / "audit2.csv", **FAST)
        assert again.changes == [] and sandbox.counts["POST /crm/v3/objects/{type}/batch/update"] == 0
        assert sandbox.counts["POST /crm/v3/properties/{type}"] == 0
        pull(tmp_path / "after", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
             progress=False, **FAST)
        after = load_snapshot(tmp_path / "after")["companies"]
        got = dict(zip(after["company_id"], after["customer_health_score"].cast(pl.Float64), strict=True))
        for row in scores.iter_rows(named=True):
            assert got[row["company_id"]] == pytest.approx(row["health_score"], abs=0.006)
        props = sandbox.portal.properties["companies"]
        assert {n for n, p in props.items() if p["groupName"] == "customer_health"} >= {
            "customer_health_score", "customer_health_band", "customer_health_points_core_depth",
            "customer_health_scored_at", "customer_health_model_version", "customer_health_weighted_score"}
        first = sandbox.portal.objects["companies"][ids[0]]["properties"]
        assert float(first["customer_health_weighted_score"]) == pytest.approx(
            sum(float(first[f"customer_health_points_{k}"]) for k in SIGNALS), abs=1e-6)
        # nothing outside the group was written
        before = {cid: rec["properties"]["name"] for cid, rec in sandbox.portal.objects["companies"].items()}
        assert before == dict(zip(snapshot["companies"]["company_id"], snapshot["companies"]["name"], strict=True))
        # rollback restores the empty values, then a rerun has nothing left to do
        undo = rollback(audit, host=sandbox.url, token=sandbox.token, config=config, apply=True, **FAST)
        assert undo.written == len(ids)
        assert sandbox.portal.objects["companies"][ids[0]]["properties"]["customer_health_score"] is None
        assert rollback(audit, host=sandbox.url, token=sandbox.token, config=config, **FAST).changes == []
    finally:
        sandbox.stop()


def test_requests_equal_the_minimum(tmp_path):
    """Fault-free: list pages, association reads, batch reads and updates are ceil(N / size) requests."""
    n = 250
    config = load_config()
    tables = companies_only(n)
    sandbox = Sandbox(portal=seed_portal(tables, config))
    sandbox.start()
    ids = [str(10_000 + i) for i in range(n)]
    model = write_model(tmp_path / "model.yml")
    write_scores(tmp_path / "scores.parquet", ids)
    try:
        pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, progress=False,
             usage=usage_file(tables, tmp_path), **FAST)
        lists = sandbox.counts["GET /crm/v3/objects/{type}"]
        # companies and deals pages + one (empty) page for each of the 7 other object types
        assert lists == 2 * math.ceil(n / 100) + 7
        assert sandbox.counts["POST /crm/v4/associations/{from}/{to}/batch/read"] == math.ceil(n / 1000)
        assert sandbox.counts["GET /crm/v3/properties/{type}"] == 9
        assert sandbox.counts["GET /crm/v4/associations/{from}/{to}/labels"] == 1
        assert sandbox.counts["GET /crm/v3/owners"] == 2  # active owners, then deactivated ones
        sandbox.reset_counts()
        push(model, tmp_path / "scores.parquet", host=sandbox.url, token=sandbox.token, apply=True,
             audit=tmp_path / "audit.csv", **FAST)
        assert sandbox.counts["POST /crm/v3/objects/{type}/batch/read"] == math.ceil(n / 100)
        assert sandbox.counts["POST /crm/v3/objects/{type}/batch/update"] == math.ceil(n / 100)
        created = sandbox.counts["POST /crm/v3/properties/{type}"]
        assert created == 7 + len(SIGNALS) + 1  # fixed properties, one per component, the calculated one
        assert sum(sandbox.counts.values()) == 2 + 1 + created + 2 * math.ceil(n / 100)
    finally:
        sandbox.stop()


def test_calculated_property_refused_is_reported(tmp_path):
    config = load_config()
    sandbox = Sandbox(portal=seed_portal(companies_only(5), config), allow_calculated=False)
    sandbox.start()
    try:
        report = push(write_model(tmp_path / "m.yml"), _scores(tmp_path, 5), host=sandbox.url, token=sandbox.token,
                      apply=True, audit=tmp_path / "a.csv", **FAST)
    finally:
        sandbox.stop()
    assert "refused" in report.calculated and "2026.11-t" in report.calculated
    record = sandbox.portal.objects["companies"]["10000"]["properties"]
    assert record["customer_health_model_version"] == "2026.11-t"
    assert "customer_health_weighted_score" not in sandbox.portal.properties["companies"]


def test_rollback_restores_the_weights_property_the_push_changed(tmp_path):
    """A push of new weights changes the calculated property's formula and description; rolling that push back
    sets both back (the next push's dry run would set the new weights again), and rolling back the first push,
    which created the property, leaves it in place. An audit without the definition leaves the property and says so."""
    config = load_config()
    sandbox = Sandbox(portal=seed_portal(companies_only(5), config))
    sandbox.start()
    ids = [str(10_000 + i) for i in range(5)]
    new_points = {**SIGNALS, "core_depth": 50, "seat_utilisation": 0}
    props = sandbox.portal.properties["companies"]
    name = "customer_health_weighted_score"
    try:
        write_model(tmp_path / "old.yml")
        write_scores(tmp_path / "old.parquet", ids)
        first = push(tmp_path / "old.yml", tmp_path / "old.parquet", host=sandbox.url, token=sandbox.token,
                     apply=True, audit=tmp_path / "first.csv", **FAST)
        old_formula, old_description = props[name]["calculationFormula"], props[name]["description"]
        write_synthetic_model(tmp_path / "new.yml", new_points, "2026.12-t")
        write_synthetic_scores(tmp_path / "new.parquet", ids, new_points, 1, "2026.12-t")
        second = push(tmp_path / "new.yml", tmp_path / "new.parquet", host=sandbox.url, token=sandbox.token,
                      apply=True, audit=tmp_path / "second.csv", **FAST)
        assert props[name]["calculationFormula"] != old_formula and "2026.12-t" in props[name]["description"]

        dry = rollback(second.audit, host=sandbox.url, token=sandbox.token, **FAST)
        assert f"weights: {name} would be restored to {old_formula}" in dry.summary()
        assert "2026.12-t" in props[name]["description"]  # a dry run changes nothing
        undo = rollback(second.audit, host=sandbox.url, token=sandbox.token, apply=True, **FAST)
        assert f"weights: {name} is restored to {old_formula}" in undo.summary()
        assert (props[name]["calculationFormula"], props[name]["description"]) == (old_formula, old_description)
        again = push(tmp_path / "new.yml", tmp_path / "new.parquet", host=sandbox.url, token=sandbox.token, **FAST)
        assert again.calculated == f"{name} would be set to {second.calculated.split(' = ', 1)[1]}"
        assert rollback(second.audit, host=sandbox.url, token=sandbox.token, **FAST).calculated.endswith(
            "is as it was before the push")

        values_only = tmp_path / "values-only.csv"  # an audit from before the definition was recorded
        with first.audit.open(newline="") as source, values_only.open("w", newline="") as target:
            writer = csv.writer(target)
            writer.writerows(row for row in csv.reader(source) if row[0] != "")
        kept = rollback(values_only, host=sandbox.url, token=sandbox.token, apply=True, **FAST)
        assert f"weights: {name} left as it is: the audit records no earlier definition" in kept.summary()
        assert props[name]["calculationFormula"] == old_formula

        created = rollback(first.audit, host=sandbox.url, token=sandbox.token, apply=True, **FAST)
        assert f"weights: {name} left in place: the push created it, and rollback deletes no property" in \
            created.summary()
        assert name in props  # the first push created it: left in place
    finally:
        sandbox.stop()


def _scores(tmp_path: Path, n: int) -> Path:
    write_scores(tmp_path / "scores.parquet", [str(10_000 + i) for i in range(n)])
    return tmp_path / "scores.parquet"


def test_push_refuses_a_property_outside_its_group(tmp_path):
    config = load_config()
    portal = seed_portal(companies_only(3), config)
    portal.define("companies", "customer_health_score", "float", group="companyinformation")
    sandbox = Sandbox(portal=portal)
    sandbox.start()
    try:
        with pytest.raises(InputError, match="customer_health_score already exists in group companyinformation"):
            push(write_model(tmp_path / "m.yml"), _scores(tmp_path, 3), host=sandbox.url, token=sandbox.token,
                 apply=True, audit=tmp_path / "a.csv", **FAST)
    finally:
        sandbox.stop()
    assert sandbox.counts["POST /crm/v3/objects/{type}/batch/update"] == 0


def test_push_rejects_bad_inputs(tmp_path):
    (tmp_path / "bad.yml").write_text("version: 1\n")
    with pytest.raises(InputError, match="signals"):
        push(tmp_path / "bad.yml", tmp_path / "none.parquet", token="x")
    pl.DataFrame({"company_id": ["1"], "health_score": [50.0]}).write_parquet(tmp_path / "s.parquet")
    with pytest.raises(InputError, match="as_of, band, churn_probability"):
        push(write_model(tmp_path / "m.yml"), tmp_path / "s.parquet", token="x")


@pytest.mark.parametrize(
    ("points", "fragment"),
    [
        ({"core_depth": -5.0, "eb_engagement": 105.0}, "'core_depth': points is -5.0"),
        ({"core_depth": float("inf"), "eb_engagement": 30.0}, "'core_depth': points is inf"),
        ({"core_depth": float("nan"), "eb_engagement": 30.0}, "numeric points"),
    ],
)
def test_push_refuses_points_it_would_write_wrongly(points, fragment, tmp_path):
    model = write_synthetic_model(tmp_path / "m.yml", points, "v1")
    with pytest.raises(InputError, match=f"model file .*{fragment}"):
        push(model, tmp_path / "none.parquet", token="x")


def test_push_refuses_a_signal_listed_twice(tmp_path):
    model = write_synthetic_model(tmp_path / "m.yml", {"core_depth": 50.0, "days_to_renewal": 50.0}, "v1")
    with pytest.raises(InputError, match="'days_to_renewal' is listed twice"):
        push(model, tmp_path / "none.parquet", token="x")


# ----- faults ------------------------------------------------------------------------------------------------------
def test_fault_run_loses_and_doubles_nothing(tmp_path):
    """20% 429s, 2% 500s, 207 partial failures, an outage in the middle of a push, then a resumed push."""
    n = 450
    config = load_config()
    faults = Faults(rate_429=0.2, rate_500=0.02, partial_rate=0.3, partial_items=0.1, seed=11)
    sandbox = Sandbox(portal=seed_portal(companies_only(n), config), faults=faults)
    sandbox.start()
    ids = [str(10_000 + i) for i in range(n)]
    model = write_model(tmp_path / "model.yml")
    scores = write_scores(tmp_path / "scores.parquet", ids, seed=3)
    audit = tmp_path / "audit.csv"
    batches = []

    def crash_on_third_batch(chunk: list[str]) -> None:
        batches.append(chunk)
        if len(batches) == 3:
            raise KeyboardInterrupt("the process dies before the third batch leaves")

    try:
        with pytest.raises(KeyboardInterrupt):
            push(model, tmp_path / "scores.parquet", host=sandbox.url, token=sandbox.token, apply=True, audit=audit,
                 before_batch=crash_on_third_batch, **FAST)
        written_before = sum(sandbox.portal.update_counts.values())
        assert 0 < written_before < n  # it crashed in the middle
        sandbox.set_faults(Faults(rate_429=0.2, rate_500=0.02, partial_rate=0.3, partial_items=0.1, seed=12))
        report = push(model, tmp_path / "scores.parquet", host=sandbox.url, token=sandbox.token, apply=True,
                      audit=audit, **FAST)
        assert not report.failed
        faults_seen = dict(sandbox.fault_counts)
    finally:
        sandbox.stop()
    assert faults_seen["429"] > 0 and faults_seen["207"] > 0
    # nothing lost: every company holds its score; nothing doubled: each company was written exactly once
    for row in scores.iter_rows(named=True):
        stored = sandbox.portal.objects["companies"][row["company_id"]]["properties"]
        assert float(stored["customer_health_score"]) == pytest.approx(row["health_score"], abs=0.006)
    assert all(sandbox.portal.update_counts[("companies", i)] == 1 for i in ids)
    with audit.open() as handle:
        rows = list(csv.DictReader(handle))
    keys = [(r["company_id"], r["property"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert {k[0] for k in keys} == {*ids, ""}  # "": the weights property's definition, recorded once


def test_pull_under_faults_resumes_from_checkpoint(snapshot, config, usage, tmp_path):
    sandbox = start(snapshot, config, faults=Faults(rate_429=0.2, rate_500=0.02, seed=4, outage_after=25))
    try:
        with pytest.raises(HubSpotError, match="503"):  # the outage, in the middle of the pull (three retries
            # ride out the 429s of the up-front property checks, which a checkpoint does not keep)
            pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, progress=False,
                 usage=usage, retries=3, **FAST)
        assert (tmp_path / "pulled.checkpoint").is_dir() and not (tmp_path / "pulled").exists()
        first_run = sum(sandbox.served.values())
        sandbox.set_faults(Faults(rate_429=0.2, rate_500=0.02, seed=5))
        sandbox.reset_counts()
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, progress=False,
                      usage=usage, **FAST)
    finally:
        sandbox.stop()
    assert result.resumed and result.retries > 0
    clean = start(snapshot, config)
    try:
        pull(tmp_path / "clean", host=clean.url, token=clean.token, config=config, usage=usage, progress=False,
             **FAST)
        total = sum(clean.served.values())
    finally:
        clean.stop()
    assert sum(sandbox.served.values()) == total - first_run + 0  # the resumed run asked only for what was missing
    pulled, reference = load_snapshot(tmp_path / "pulled"), load_snapshot(tmp_path / "clean")
    for table in TABLES:
        assert canonical(pulled[table], table).equals(canonical(reference[table], table)), table


DAY = 86_400
DAILY_429 = {"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
             "policyName": "DAILY", "groupName": "publicapi:private-app-api-calls-daily"}


class Refusing:
    """Makes a stand-in answer `status`/`body`/`headers` to the requests after its first `served` ones (`times` of
    them, all when None) while `on`, and counts these refusals. Every sleep asked of `time.sleep` is recorded
    instead of slept (a test never sleeps long); one of a minute or more fails the test at once."""

    def __init__(self, monkeypatch, sandbox: Sandbox, served: int, status: int, body: dict, headers: dict,
                 times: int | None = None) -> None:
        self.on, self.refused, self.slept, self.seen = True, 0, [], 0
        handle = sandbox.handle

        def refusing_handle(*args):
            with sandbox.lock:
                self.seen += 1
                refuse = self.on and self.seen > served and (times is None or self.refused < times)
                self.refused += refuse
            return (status, body, dict(headers)) if refuse else handle(*args)

        def recorded_sleep(seconds: float) -> None:
            assert seconds < 60, f"asked to sleep {seconds:.0f} s"
            self.slept.append(seconds)

        monkeypatch.setattr(sandbox, "handle", refusing_handle)
        monkeypatch.setattr("time.sleep", recorded_sleep)


@pytest.mark.parametrize(("status", "body", "retry_after", "said"), [
    (429, DAILY_429, str(DAY), "asks to wait 86,400 s, until "),
    (503, {"status": "error", "message": "maintenance"}, "http-date", "asks to wait 86,"),
    (429, DAILY_429, None, "daily API limit is spent (429 DAILY); it resets at midnight"),
])
def test_a_wait_too_long_stops_the_pull_at_once_and_a_rerun_resumes(status, body, retry_after, said, tmp_path,
                                                                    capsys, monkeypatch):
    """A Retry-After of a day (seconds or an HTTP date), or HubSpot's daily limit spent, is not slept through: the
    pull stops at the first such answer with a one-line error (exit 2) saying how long HubSpot asked to wait, and
    keeps its checkpoint, so the same command run later resumes."""
    from hsutils.cli import main

    tables = companies_only(30)
    usage = usage_file(tables, tmp_path)
    sandbox = Sandbox(portal=seed_portal(tables, load_config()), token="good-token")
    sandbox.start()
    headers = {} if retry_after is None else {"Retry-After": retry_after if retry_after != "http-date" else
                                              format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)}
    refusing = Refusing(monkeypatch, sandbox, 12, status, body, headers)  # after the property reads and a page
    try:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
        code = main(["pull", "--out", str(tmp_path / "pulled"), "--host", sandbox.url, "--rate", "off", "--quiet",
                     "--usage", str(usage)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert said in err and "run the same command again later" in err and "checkpoint" in err
        assert refusing.refused == 1 and not refusing.slept  # neither retried nor slept
        assert (tmp_path / "pulled.checkpoint").is_dir() and not (tmp_path / "pulled").exists()
        refusing.on = False  # later: the limit has reset
        result = pull(tmp_path / "pulled", host=sandbox.url, token="good-token", progress=False, usage=usage,
                      **FAST)
    finally:
        sandbox.stop()
    assert result.resumed and result.rows["companies"] == 30
    assert not (tmp_path / "pulled.checkpoint").exists()


def test_a_retry_after_within_the_limit_is_waited_out(monkeypatch):
    """A Retry-After of HubSpot's 10-second window is waited out, as asked, and the call succeeds; a client whose
    limit is below the asked wait stops at once with a one-line error instead."""
    from hsutils.hubspot.client import MAX_WAIT_SECONDS, Connection

    sandbox = Sandbox(portal=seed_portal(companies_only(3), load_config()))
    sandbox.start()
    ten_secondly = {**DAILY_429, "policyName": "TEN_SECONDLY_ROLLING"}
    try:
        refusing = Refusing(monkeypatch, sandbox, 0, 429, ten_secondly, {"Retry-After": "10"}, times=2)
        conn = Connection(host=sandbox.url, token=sandbox.token, **FAST)
        assert len(conn.call("list companies", conn.api("crm.companies.basic_api").get_page, limit=10).results) == 3
        assert refusing.slept == [10.0, 10.0] and MAX_WAIT_SECONDS >= 10
        refusing.refused, refusing.slept = 0, []
        short = Connection(host=sandbox.url, token=sandbox.token, max_wait=5, **FAST)
        with pytest.raises(HubSpotError, match=r"asks to wait 10 s, until .* \(429 TEN_SECONDLY_ROLLING\); stopped"):
            short.call("list companies", short.api("crm.companies.basic_api").get_page, limit=10)
        assert refusing.refused == 1 and not refusing.slept
    finally:
        sandbox.stop()


def test_rate_limit_answers_429_and_the_client_limiter_avoids_it(tmp_path):
    config = load_config()
    # a 2 s window: 8 quick requests fall in one window even on a busy machine
    sandbox = Sandbox(portal=seed_portal(companies_only(700), config), rate=6, window=2.0)
    sandbox.start()
    try:
        import urllib.request

        request = urllib.request.Request(f"{sandbox.url}/crm/v3/objects/companies?limit=1",
                                         headers={"Authorization": f"Bearer {sandbox.token}"})
        statuses = []
        for _ in range(8):
            try:
                with urllib.request.urlopen(request) as answer:
                    statuses.append(answer.status)
                    headers = answer.headers
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                body = exc.read().decode()
                limited_headers = exc.headers
        assert statuses.count(200) == 6 and statuses[-1] == 429
        assert '"errorType": "RATE_LIMIT"' in body and limited_headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert headers["X-HubSpot-RateLimit-Max"] == "6"
        from hsutils.hubspot.client import Connection

        # the client keeps under the server's limit with a margin: a request delayed on its way cannot make the
        # server see more than 6 in its window
        conn = Connection(host=sandbox.url, token=sandbox.token, rate=5, interval=2.0, backoff=0.001)
        api = conn.api("crm.companies.basic_api")
        sandbox.reset_counts()
        import time

        time.sleep(2.1)
        after = None
        for _ in range(7):  # 7 pages of 100 at 5 per 2 s: the limiter waits instead of being refused
            page = conn.call("list", api.get_page, limit=100, after=after)
            after = page.paging.next.after if page.paging and page.paging.next else None
        assert sandbox.fault_counts["rate_limited"] == 0 and conn.limiter.waited > 0.5
    finally:
        sandbox.stop()


# ----- token -------------------------------------------------------------------------------------------------------
def test_canary_token_appears_nowhere(snapshot, config, usage, tmp_path, capsys, caplog):
    canary = "pat-na1-CANARY-7f3e9c1d-0b4a-4e8e-9d2f-5a6b7c8d9e0f"
    sandbox = start(snapshot, config, token=canary, faults=Faults(rate_429=0.1, rate_500=0.02, partial_rate=0.2))
    ids = snapshot["companies"].get_column("company_id").to_list()
    try:
        pull(tmp_path / "pulled", host=sandbox.url, token=canary, config=config, usage=usage, progress=True,
             **FAST)
        push(write_model(tmp_path / "m.yml"), _write(tmp_path, ids), host=sandbox.url, token=canary, apply=True,
             audit=tmp_path / "audit.csv", **FAST)
        rollback(tmp_path / "audit.csv", host=sandbox.url, token=canary, apply=True, **FAST)
        sandbox.set_faults(Faults(outage_after=0))
        with pytest.raises(HubSpotError) as failure:
            pull(tmp_path / "again", host=sandbox.url, token=canary, config=config, usage=usage, progress=False,
                 retries=1, **FAST)
    finally:
        sandbox.stop()
    assert canary not in str(failure.value)
    captured = capsys.readouterr()
    assert canary not in captured.out + captured.err + caplog.text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert canary.encode() not in path.read_bytes(), path


def test_a_short_token_is_scrubbed_only_where_it_stands_alone_and_a_real_one_everywhere():
    """A test token such as "err" is taken out where it stands alone, never out of words ("error" stays); a real
    token (pat-na1-...) is taken out wherever it appears, glued to other text too."""
    from hsutils.hubspot.client import scrub

    assert scrub("an error for token err (err); err.", "err") == "an error for token *** (***); ***."
    real = "pat-na1-11111111-2222-3333-4444-555555555555"
    assert scrub(f"key={real}x and Bearer abc.def", real) == "key=***x and Bearer ***"


def _write(tmp_path: Path, ids: list[str]) -> Path:
    write_scores(tmp_path / "scores.parquet", ids)
    return tmp_path / "scores.parquet"


def test_401_and_403_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    from hsutils.cli import main

    config = load_config()
    sandbox = Sandbox(portal=seed_portal(companies_only(3), config), token="good-token",
                      extra_tokens={"narrow-token": {"crm.objects.companies.read", "crm.schemas.companies.read"}})
    sandbox.start()
    try:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "wrong-token")
        usage = usage_file(companies_only(3), tmp_path)
        base = ["--host", sandbox.url, "--rate", "off", "--quiet", "--usage", str(usage)]
        assert main(["pull", "--out", str(tmp_path / "a"), *base]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "401" in err and "HUBSPOT_ACCESS_TOKEN" in err
        assert "wrong-token" not in err
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "narrow-token")
        assert main(["pull", "--out", str(tmp_path / "b"), *base]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "403" in err and "crm.schemas.contacts.read" in err
        assert not (tmp_path / "a.checkpoint").exists() and not (tmp_path / "b.checkpoint").exists()
        monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN")
        monkeypatch.chdir(tmp_path)  # no .env here either
        write_model(tmp_path / "m.yml")
        _scores(tmp_path, 3)
        assert main(["push", "--model", "m.yml", "--scores", "scores.parquet", "--host", sandbox.url]) == 2
        assert "HUBSPOT_ACCESS_TOKEN is not set" in capsys.readouterr().err
    finally:
        sandbox.stop()


def test_cli_push_dry_run_reads_token_from_dotenv(tmp_path, capsys, monkeypatch):
    from hsutils.cli import main

    config = load_config()
    sandbox = Sandbox(portal=seed_portal(companies_only(30), config), token="dotenv-token")
    sandbox.start()
    try:
        monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
        monkeypatch.chdir(tmp_path)
        (tmp_path / ".env").write_text("HUBSPOT_ACCESS_TOKEN=dotenv-token\n")
        write_model(tmp_path / "m.yml")
        _scores(tmp_path, 30)
        code = main(["push", "--model", "m.yml", "--scores", "scores.parquet", "--host", sandbox.url, "--rate", "off"])
        out = capsys.readouterr().out
    finally:
        sandbox.stop()
    assert code == 0 and "30 would change" in out and "--apply" in out
    assert sandbox.counts["POST /crm/v3/objects/{type}/batch/update"] == 0


# ----- the stand-in answers like HubSpot ---------------------------------------------------------------------------
def test_stand_in_batch_and_property_rules(tmp_path):
    from hubspot.crm.companies import (
        BatchInputSimplePublicObjectBatchInput,
        BatchReadInputSimplePublicObjectId,
        PublicObjectSearchRequest,
        SimplePublicObjectBatchInput,
        SimplePublicObjectId,
    )
    from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

    from hsutils.hubspot.client import Connection

    config = load_config()
    sandbox = Sandbox(portal=seed_portal(companies_only(250), config))
    sandbox.start()
    try:
        conn = Connection(host=sandbox.url, token=sandbox.token, rate=None, retries=0)
        batch = conn.api("crm.companies.batch_api")
        with pytest.raises(HubSpotError, match="Too many inputs"):
            conn.call("read", batch.read, BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=str(10_000 + i)) for i in range(101)], properties=["name"],
                properties_with_history=[]))
        answer = conn.call("read", batch.read, BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id="10000"), SimplePublicObjectId(id="999")], properties=["name"],
            properties_with_history=[]))
        assert [r.id for r in answer.results] == ["10000"] and answer.errors[0].category == "OBJECT_NOT_FOUND"
        bad = BatchInputSimplePublicObjectBatchInput(inputs=[
            SimplePublicObjectBatchInput(id="10000", properties={"industry": "Retail"}),
            SimplePublicObjectBatchInput(id="10001", properties={"no_such_property": "x"})])
        with pytest.raises(HubSpotError, match="400"):
            conn.call("update", batch.update, bad)
        assert sandbox.portal.objects["companies"]["10000"]["properties"]["industry"] == "Software"  # all or none
        search = conn.api("crm.companies.search_api")
        page = conn.call("search", search.do_search, PublicObjectSearchRequest(limit=200, properties=["name"]))
        assert page.total == 250 and len(page.results) == 200 and page.paging.next.after == "200"
        groups = conn.api("crm.properties.groups_api")
        conn.call("group", groups.create, "companies", PropertyGroupCreate(name="g1", label="G"))
        with pytest.raises(HubSpotError) as dup:
            conn.call("group", groups.create, "companies", PropertyGroupCreate(name="g1", label="G"))
        assert dup.value.status == 409
        core = conn.api("crm.properties.core_api")
        conn.call("p", core.create, "companies", PropertyCreate(name="p_a", label="A", type="number",
                                                                field_type="number", group_name="g1"))
        with pytest.raises(HubSpotError) as dup:
            conn.call("p", core.create, "companies", PropertyCreate(name="p_a", label="A", type="number",
                                                                    field_type="number", group_name="g1"))
        assert dup.value.status == 409
        conn.call("calc", core.create, "companies", PropertyCreate(
            name="p_calc", label="C", type="number", field_type="calculation_equation", group_name="g1",
            calculation_formula="max(p_a, 2) * 3"))
        conn.call("update", batch.update, BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id="10002", properties={"p_a": "5"})]))
        assert sandbox.portal.objects["companies"]["10002"]["properties"]["p_calc"] == "15"
        with pytest.raises(HubSpotError, match="calculated"):
            conn.call("update", batch.update, BatchInputSimplePublicObjectBatchInput(
                inputs=[SimplePublicObjectBatchInput(id="10002", properties={"p_calc": "1"})]))
        basic = conn.api("crm.companies.basic_api")
        with pytest.raises(HubSpotError, match="limit"):
            conn.call("list", basic.get_page, limit=101)
    finally:
        sandbox.stop()


def test_labels_are_user_defined_with_portal_specific_ids(snapshot):
    config = load_config()
    one = seed_portal(snapshot.tables, config, seed=1).labels[("contacts", "companies")]
    two = seed_portal(snapshot.tables, config, seed=2).labels[("contacts", "companies")]
    mine = {label: tid for tid, (cat, label) in one.items() if cat == "USER_DEFINED"}
    theirs = {label: tid for tid, (cat, label) in two.items() if cat == "USER_DEFINED"}
    assert set(mine) == set(theirs) >= {"Decision maker", "Champion"}
    assert mine != theirs  # ids differ per portal: the pull discovers them by label text


def test_labels_and_property_definitions_are_read_as_hubspot_sends_them(snapshot, config, usage, tmp_path):
    """Association labels and property definitions are read as plain JSON: a label category HubSpot added since the
    client was generated, or a property definition whose fields the client's models cannot read (an empty
    createdAt, an option's displayOrder as text), passes through. Label text is matched ignoring case and spaces
    around or within it, in HubSpot ("Decision  maker ") and in the config (" champion"), so every role is kept."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    for labels in portal.labels.values():
        for type_id, (category, label) in list(labels.items()):
            if category == "USER_DEFINED":
                labels[type_id] = ("USER_DEFINED_V2", "Decision  maker " if label == "Decision maker" else label)
    for definitions in portal.properties.values():
        for spec in definitions.values():
            spec.update(createdAt="", options=[{"label": "A", "value": "a", "displayOrder": "first", "hidden": False}])
    config = load_config(overrides={"core_events": snapshot.manifest.core_events,
                                    "contacts": {"roles": {"labels": {" champion": "champion"}}}})
    result = pull_from(portal, config, usage, tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")
    assert canonical(pulled["contacts"], "contacts").equals(canonical(snapshot["contacts"], "contacts"))
    assert {"economic_buyer", "champion"} <= set(pulled["contacts"]["role"])
    assert not [w for w in result.warnings if "label" in w]


def test_portal_config_merges_and_rejects_unknown_sections(tmp_path):
    path = tmp_path / "portal.yml"
    path.write_text("companies:\n  properties:\n    tier: plan_name\npush:\n  prefix: hsu_\n")
    config = load_config(path)
    assert config.table("companies").properties["tier"] == "plan_name"
    assert config.table("companies").properties["name"] == "name"  # defaults kept
    assert config.push["prefix"] == "hsu_" and config.push["group"] == "customer_health"
    path.write_text("companys: {}\n")
    with pytest.raises(InputError, match="unknown section"):
        load_config(path)
    assert config.set_by_user("companies", "properties", "tier") and not config.set_by_user("deals", "properties")
    assert config.term_months == 12 and load_config(overrides={"deals": {"term_months": 24}}).term_months == 24
    for months in (0, "12", 1.5):
        with pytest.raises(InputError, match="deals.term_months"):
            load_config(overrides={"deals": {"term_months": months}})


def test_companies_only_portal_round_trips(tmp_path):
    """A portal with companies and deals but no activity yet still gives a valid snapshot."""
    tables = companies_only(12)
    manifest = Manifest(schema_version=1, source="test", created_at=datetime(2026, 1, 1, tzinfo=UTC),
                        core_events=["report_published", "workflow_run"])
    write_snapshot(tables, manifest, tmp_path / "seed")
    config = load_config()
    sandbox = Sandbox(portal=seed_portal(load_snapshot(tmp_path / "seed").tables, config))
    sandbox.start()
    try:
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, progress=False,
                      usage=usage_file(tables, tmp_path), **FAST)
    finally:
        sandbox.stop()
    assert result.rows["companies"] == 12 and result.rows["usage_events"] == 12
    pulled = load_snapshot(tmp_path / "pulled")
    for table in ("companies", "deals", "usage_events"):
        assert canonical(pulled[table], table).equals(canonical(tables[table], table)), table


def test_activity_of_a_contact_without_a_company_keeps_its_company_and_loses_the_link(snapshot, config, usage, tmp_path):
    """A contact with no company association is left out of the pull; the activity linked to it must not make
    the whole snapshot fail its contact_id check: it keeps its company, its contact is left empty, and it is counted."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    engagements = snapshot["engagements"]
    contact = engagements.filter(pl.col("contact_id").is_not_null())["contact_id"][0]
    portal.assoc[("contacts", "companies")].pop(contact)
    for linked in portal.assoc[("companies", "contacts")].values():
        linked.pop(contact, None)
    result = pull_from(portal, config, usage, tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")
    assert contact not in pulled["contacts"]["contact_id"].to_list()
    theirs = engagements.filter(pl.col("contact_id") == contact)["engagement_id"]
    assert theirs.len() > 0 and pulled["engagements"].height == engagements.height
    unlinked = pulled["engagements"].filter(pl.col("engagement_id").is_in(theirs.implode()))
    assert unlinked["contact_id"].null_count() == theirs.len()
    assert unlinked.sort("engagement_id")["company_id"].equals(
        engagements.filter(pl.col("contact_id") == contact).sort("engagement_id")["company_id"])
    assert result.skipped["contacts without a usable company_id"] == 1
    assert result.skipped["engagements linked to a contact not pulled (contact left empty)"] == theirs.len()


def test_activity_scheduled_after_the_pull_is_left_out_and_counted(config, tmp_path):
    tables = companies_only(6)
    future = datetime(2031, 5, 4, tzinfo=UTC)
    first = tables["companies"].get_column("company_id")[0]
    tables["engagements"] = pl.DataFrame({
        "engagement_id": ["e1", "e2"], "company_id": [first, first], "contact_id": [None, None],
        "type": ["meeting", "meeting"], "direction": ["outbound", "outbound"],
        "occurred_at": [datetime(2025, 3, 1, tzinfo=UTC), future],  # the second is booked years ahead
        "opened": [None, None], "replied": [None, None], "meeting_kind": ["qbr", "renewal"],
    }, schema=TABLES["engagements"].polars_schema)
    tables["usage_events"] = pl.concat([tables["usage_events"], tables["usage_events"].head(1).with_columns(
        pl.lit(future).cast(TABLES["usage_events"].polars_schema["occurred_at"]).alias("occurred_at"))])
    result = pull_from(seed_portal(tables, config, datetime(2032, 1, 1, tzinfo=UTC)), config,
                       usage_file(tables, tmp_path), tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")
    assert pulled["engagements"].get_column("engagement_id").to_list() == ["e1"]
    assert pulled["usage_events"].height == tables["usage_events"].height - 1
    assert result.skipped["engagements dated after the pull (scheduled ahead)"] == 1
    assert result.skipped["usage_events dated after the pull (scheduled ahead)"] == 1


# ----- real portals' records -----------------------------------------------------------------------------------
def test_records_breaking_a_row_rule_are_left_out_and_counted(snapshot, config, usage, tmp_path):
    """Real portals hold a few records the snapshot's rules refuse (a credit deal with a negative amount, a
    contract ending the day it starts, a won deal whose close date was cleared, a ticket imported after it was
    closed, a csat of 0): the pull leaves those records out (an optional value is emptied instead) and counts
    them, instead of refusing the whole snapshot."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    deals = iter(portal.objects["deals"].items())
    (credit, rec), (same_day, rec2) = next(deals), next(deals)
    rec["properties"]["amount"] = "-1500"
    rec2["properties"]["contract_end_date"] = rec2["properties"]["contract_start_date"]
    no_close = next(i for i, r in deals if r["properties"]["dealstage"] in ("closedwon", "130002"))
    portal.objects["deals"][no_close]["properties"]["closedate"] = ""
    closed = [i for i, r in portal.objects["tickets"].items() if r["properties"].get("closed_date")]
    portal.objects["tickets"][closed[0]]["properties"]["closed_date"] = "2020-01-01T00:00:00.000Z"
    portal.objects["tickets"][closed[1]]["properties"]["csat_score"] = "0"
    result = pull_from(portal, config, usage, tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")
    assert set(snapshot["deals"]["deal_id"]) - set(pulled["deals"]["deal_id"]) == {credit, same_day, no_close}
    assert set(snapshot["tickets"]["ticket_id"]) - set(pulled["tickets"]["ticket_id"]) == {closed[0]}
    assert pulled["tickets"].filter(pl.col("ticket_id") == closed[1])["csat"].to_list() == [None]
    assert result.skipped == {"deals left out: negative value(s) (arr)": 1,
                              "deals left out: row(s) with term_end not after term_start (term_end)": 1,
                              "deals left out: won/lost deal(s) without close_date (close_date)": 1,
                              "tickets left out: row(s) with closed_at before created_at (closed_at)": 1,
                              "tickets with csat emptied: value(s) outside 1-5": 1}
    assert "deals left out: negative value(s) (arr)" in result.summary()


@pytest.mark.parametrize(("override", "named"), [
    ({"deals": {"properties": {"seats": "seats_purchased"}}}, "deals.properties.seats names seats_purchased"),
    ({"surveys": {"properties": {"score": "nps_score"}}}, "surveys.properties.score names nps_score"),
])
def test_config_property_the_portal_lacks_for_a_needed_column_is_one_line_error(snapshot, config, usage, tmp_path,
                                                                               capsys, monkeypatch, override,
                                                                               named):
    """A property the config names for a column every record needs (no default, no fallback) that the portal does
    not have is a one-line error naming it (exit 2), not a snapshot with every deal or survey response left out."""
    from hsutils.cli import main

    (tmp_path / "portal.yml").write_text(yaml.safe_dump({"core_events": snapshot.manifest.core_events, **override}))
    sandbox = start(snapshot, config, token="good-token")
    try:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
        code = main(["pull", "--out", str(tmp_path / "pulled"), "--host", sandbox.url, "--rate", "off", "--quiet",
                     "--usage", str(usage), "--config", str(tmp_path / "portal.yml")])
    finally:
        sandbox.stop()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert named in err and "not a property of" in err
    assert not (tmp_path / "pulled").exists() and not (tmp_path / "pulled.checkpoint").exists()


STOCK_DEAL_WARNINGS = [
    "deals: the portal has no contract_start_date property: a deal's term starts at its close date; name the term "
    "start property in --config (deals.properties.term_start)",
    "deals: the portal has no contract_end_date property: a deal's term ends 12 months (deals.term_months) after it "
    "starts; name the term end property in --config (deals.properties.term_end)",
    "deals: the portal has no seat_count property: seats are not recorded, so seat utilisation is unknown; name the "
    "seats property in --config (deals.properties.seats)",
]


def test_a_stock_portal_without_contract_term_or_seat_properties_is_pulled_with_the_defaults(snapshot, config, usage,
                                                                                           tmp_path):
    """A portal with only HubSpot's default deal properties, pulled without --config: the built-in defaults name
    custom term and seat properties it lacks, so a deal's term runs from its close date (an open deal's expected
    close) for 12 months, seats are 0 (not recorded), the summary says so, and a deal without a close date is left
    out and counted. Seat utilisation is then unknown (null), so expansion candidates cannot be picked."""
    from hsutils.narrative import seats_in_use_unknown
    from hsutils.panel import build_panel

    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    custom = ("contract_start_date", "contract_end_date", "seat_count")
    for name in custom:
        portal.properties["deals"].pop(name)
    deals = snapshot["deals"]
    expected_close = {r["deal_id"]: r["close_date"] or r["term_start"] for r in deals.iter_rows(named=True)}
    for deal_id, record in portal.objects["deals"].items():
        for name in custom:
            record["properties"].pop(name, None)
        if not record["properties"].get("closedate"):  # HubSpot's open deals carry their expected close date
            record["properties"]["closedate"] = expected_close[deal_id].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    undated = deals.filter(pl.col("stage") == "open")["deal_id"][0]
    portal.objects["deals"][undated]["properties"]["closedate"] = ""
    result = pull_from(portal, config, usage, tmp_path)

    assert result.warnings[1:3] == STOCK_DEAL_WARNINGS[1:]
    assert not any("not in the portal" in w for w in result.warnings)
    assert result.skipped == {"deals without a usable term_start": 1}
    assert all(w in result.summary() for w in result.warnings[:3])
    pulled = load_snapshot(tmp_path / "pulled")
    closed = pl.coalesce("close_date", "term_start")
    # the demo's renewals close days before the term they renew ends: those start at its end, the rest at their close
    shifted = pulled["deals"].join(deals.select("deal_id", closed.alias("closed")), on="deal_id").filter(
        pl.col("term_start") != pl.col("closed"))
    assert result.warnings[0] == STOCK_DEAL_WARNINGS[0].replace("close date;", f"close date, but {shifted.height} "
                                                                "renewal(s) closed before the term they renew ended "
                                                                "start at that term's end;")
    assert shifted.height > 0 and shifted.filter(pl.col("deal_type") != "renewal").is_empty()
    assert (shifted["term_start"] > shifted["close_date"]).all()
    renewed_ends = pulled["deals"].filter(pl.col("stage") == "won").select("company_id", term_start="term_end")
    assert shifted.join(renewed_ends, on=["company_id", "term_start"], how="semi").height == shifted.height
    starts = deals.filter(pl.col("deal_id") != undated).with_columns(closed.alias("term_start")).join(
        shifted.select("deal_id", shifted_start="term_start"), on="deal_id", how="left").with_columns(
        pl.coalesce("shifted_start", "term_start").alias("term_start")).drop("shifted_start")
    wanted = starts.with_columns(pl.col("term_start").dt.offset_by("12mo").alias("term_end"), pl.lit(0).alias("seats"))
    assert canonical(pulled["deals"], "deals").equals(canonical(wanted, "deals"))
    assert pulled["deals"]["term_end"].dt.month().equals(pulled["deals"]["term_start"].dt.month())
    # the demo's one company on monthly terms keeps two 12-month fallback terms side by side, and the panel says so
    with pytest.warns(UserWarning, match=r"table deals: 1 company has two contract terms .*company_id=c00030"):
        panel = build_panel(pulled)
    assert panel["contracted_seats"].drop_nulls().unique().to_list() == [0]
    assert panel["seat_utilisation"].null_count() == panel.height
    latest = panel.filter(pl.col("as_of") == pl.col("as_of").max())
    assert latest.height > 0 and seats_in_use_unknown(latest.select("seat_utilisation").to_pandas())


def test_deals_with_an_empty_default_term_or_seat_property_take_the_fallback_and_user_named_ones_are_left_out(
        config, tmp_path):
    """The built-in defaults' contract term and seat properties exist but are empty on some won renewals (never
    filled in): those deals take the stock portal's fallback (term from the close date for 12 months, seats 0),
    counted in one warning line, instead of being left out. A property the user's own config names gets no such
    help: a deal where it is empty is left out and counted, so an unfilled mapping shows."""
    tables = companies_only(6)
    portal = seed_portal(tables, config)
    deal_ids = sorted(portal.objects["deals"])
    for deal_id in deal_ids[:2]:
        portal.objects["deals"][deal_id]["properties"]["contract_start_date"] = ""
        portal.objects["deals"][deal_id]["properties"].pop("contract_end_date")
    portal.objects["deals"][deal_ids[2]]["properties"]["seat_count"] = ""
    usage = usage_file(tables, tmp_path)
    result = pull_from(portal, config, usage, tmp_path)

    assert not result.skipped
    assert [w for w in result.warnings if w.startswith("deals:")] == [
        "deals: 3 deal(s) have a contract term or seat property empty, filled as on a portal without it "
        "(contract_start_date on 2: a deal's term starts at its close date; contract_end_date on 2: a deal's term "
        "ends 12 months (deals.term_months) after it starts; seat_count on 1: seats are not recorded, so seat "
        "utilisation is unknown); fill them in HubSpot (or name the portal's own properties in --config)"]
    deals = load_snapshot(tmp_path / "pulled")["deals"].sort("deal_id")
    assert deals["term_start"].to_list() == [datetime(2025, 12, 1, tzinfo=UTC)] * 2 + [datetime(2025, 1, 1, tzinfo=UTC)] * 4
    assert deals["term_end"].to_list() == [datetime(2026, 12, 1, tzinfo=UTC)] * 2 + [datetime(2026, 1, 1, tzinfo=UTC)] * 4
    assert deals["seats"].to_list() == [10, 10, 0, 10, 10, 10]

    (tmp_path / "portal.yml").write_text(yaml.safe_dump(
        {"deals": {"properties": {"term_start": "contract_start_date", "term_end": "contract_end_date"}}}))
    shutil.rmtree(tmp_path / "pulled")
    result = pull_from(portal, load_config(tmp_path / "portal.yml"), usage, tmp_path)
    assert result.skipped == {"deals without a usable term_start": 2}
    assert [w for w in result.warnings if w.startswith("deals:")] == [
        "deals: 1 deal(s) have a contract term or seat property empty, filled as on a portal without it (seat_count "
        "on 1: seats are not recorded, so seat utilisation is unknown); fill them in HubSpot (or name the portal's "
        "own properties in --config)"]


@pytest.mark.parametrize("user_named", [False, True])
def test_deal_amounts_in_several_currencies_are_read_in_the_company_currency(user_named, config, tmp_path):
    """A multi-currency portal: `amount` is in each deal's own currency (deal_currency_code), so ARR summed or
    compared across deals would mix EUR and USD. With the built-in ARR property the pull reads HubSpot's
    amount_in_home_currency instead and says so in one line; `amount` named in the user's config is kept, with one
    line saying how to map it. A deal in a pipeline the config does not map is counted under its pipeline id."""
    tables = companies_only(6)
    portal = seed_portal(tables, config)
    portal.define("deals", "deal_currency_code")
    portal.define("deals", "amount_in_home_currency", "float")
    deal_ids = sorted(portal.objects["deals"])
    for i, deal_id in enumerate(deal_ids):
        portal.objects["deals"][deal_id]["properties"].update(
            deal_currency_code="EUR" if i % 2 else "USD", amount_in_home_currency="13200.0" if i % 2 else "12000.0")
    portal.objects["deals"][deal_ids[5]]["properties"].update(pipeline="99887766", dealstage="1234567")
    if user_named:
        (tmp_path / "portal.yml").write_text(yaml.safe_dump({"deals": {"properties": {"arr": "amount"}}}))
    result = pull_from(portal, load_config(tmp_path / "portal.yml") if user_named else config,
                       usage_file(tables, tmp_path), tmp_path)

    currency = [w for w in result.warnings if "currencies" in w]
    if user_named:
        assert currency == ["deals: amounts in 2 currencies (EUR 2, USD 3) and arr is read from amount, each deal's "
                            "own currency: map deals.properties.arr to amount_in_home_currency (the company currency)"]
    else:
        assert currency == ["deals: amounts in 2 currencies (EUR 2, USD 3): arr is read from amount_in_home_currency "
                            "(the company currency), not amount"]
    deals = load_snapshot(tmp_path / "pulled")["deals"].sort("deal_id")
    assert deals["arr"].to_list() == ([12_000.0] * 5 if user_named else [12_000.0, 13_200.0] * 2 + [12_000.0])
    assert result.skipped == {"deals in pipeline 99887766, which the portal config does not map (deals.pipelines)": 1}


def test_deal_stages_the_config_does_not_list_are_read_as_open_and_named_in_one_warning(config, tmp_path):
    """A portal's own stage ids (numbers, such as a custom "Closed won - signed") that neither the config lists nor
    HubSpot's pipeline metadata maps are read as open: the summary names each pipeline/stage with its count in one line, so a won stage read as open
    shows. HubSpot's stock sales pipeline stages are all listed, so a stock portal gets no such line."""
    tables = companies_only(4)
    portal = seed_portal(tables, config)
    deal_ids = sorted(portal.objects["deals"])
    portal.objects["deals"][deal_ids[0]]["properties"]["dealstage"] = "130009"
    portal.objects["deals"][deal_ids[1]]["properties"].update(pipeline="default", dealstage="qualifiedtobuy")
    result = pull_from(portal, config, usage_file(tables, tmp_path), tmp_path)

    assert [w for w in result.warnings if "stage" in w] == [
        "deals: 1 deal(s) in stage(s) the portal config does not list, read as open: 75318642/130009 (1); map won and "
        "lost stages under deals.pipelines.<pipeline>.stages"]
    deals = load_snapshot(tmp_path / "pulled")["deals"].sort("deal_id")
    assert deals["stage"].to_list() == ["open", "open", "won", "won"]


RENEWALS = ("87654321", "Renewals", [("1234561", "Renewal due", {"isClosed": "false", "probability": "0.5"}),
                                     ("1234567", "Renewed", {"isClosed": "true", "probability": "1.0"}),
                                     ("1234568", "Churned", {"isClosed": "true", "probability": "0.0"}),
                                     ("1234569", "Merged into parent", {"isClosed": "true", "probability": "0.0"}),
                                     ("1234570", "On hold", {"isClosed": "true", "probability": "0.5"})])


def portal_with_own_renewals_pipeline(config, stages: list[str]):
    """(tables, portal): one company per stage of `stages`, its won renewal moved into the portal's own Renewals
    pipeline (numeric pipeline and stage ids, as HubSpot gives them) at that stage."""
    tables = companies_only(len(stages))
    portal = seed_portal(tables, config)
    portal.define_pipeline("deals", *RENEWALS)
    for deal_id, stage in zip(sorted(portal.objects["deals"]), stages, strict=True):
        portal.objects["deals"][deal_id]["properties"].update(pipeline=RENEWALS[0], dealstage=stage)
    return tables, portal


def test_stages_the_config_does_not_list_are_mapped_from_hubspots_pipeline_metadata(config, tmp_path, capsys,
                                                                                    monkeypatch):
    """A portal's own renewals pipeline (numeric ids) whose stages the config does not list: `hsutils pull` reads
    HubSpot's pipelines (GET /crm/v3/pipelines/deals) and maps each stage by its metadata, closed at probability 1.0
    won, closed at 0.0 lost, not closed open, saying so in one line with the stages' labels; a stage the user's config
    lists keeps the config's mapping; a closed stage at another probability says neither, so it is read as open and
    named in the line for stages nothing maps."""

    stages = ["1234561", "1234567", "1234567", "1234568", "1234569", "1234570"]
    tables, portal = portal_with_own_renewals_pipeline(config, stages)
    (tmp_path / "portal.yml").write_text(yaml.safe_dump(
        {"deals": {"pipelines": {RENEWALS[0]: {"deal_type": "renewal", "stages": {"1234569": "won"}}}}}))
    code, sandbox = pull_cli(portal, tmp_path, monkeypatch, "--config", str(tmp_path / "portal.yml"),
                             "--usage", str(usage_file(tables, tmp_path)))
    assert code == 0
    assert sandbox.counts["GET /crm/v3/pipelines/{type}"] == 1
    out = capsys.readouterr().out
    assert [line.strip() for line in out.splitlines() if "warning: deals" in line] == [
        "warning: deals: 4 deal(s) in stage(s) the portal config does not list, mapped from HubSpot's pipeline "
        "metadata (closed at probability 1.0 won, at 0.0 lost, else open): won: Renewals/Renewed (87654321/1234567) "
        "2; lost: Renewals/Churned (87654321/1234568) 1; open: 1 deal(s) in 1 stage(s); list a stage under "
        "deals.pipelines.<pipeline>.stages to map it otherwise",
        "warning: deals: 1 deal(s) in stage(s) the portal config does not list, read as open: 87654321/1234570 (1); "
        "map won and lost stages under deals.pipelines.<pipeline>.stages"]
    deals = load_snapshot(tmp_path / "pulled")["deals"].sort("deal_id")
    assert deals["stage"].to_list() == ["open", "won", "won", "lost", "won", "open"]
    assert deals["close_date"].null_count() == 2  # an open deal has no close date
    assert deals["deal_type"].unique().to_list() == ["renewal"]


def test_the_config_decides_pipelines_and_its_stages_win_over_hubspots_metadata():
    """Where a deal's stage comes from: the user's config, else HubSpot's metadata ("defaults" when the built-in
    config agrees with it), else the built-in config, else open; a pipeline the config does not map is not read."""
    config = load_config(overrides={"deals": {"pipelines": {"555": {"deal_type": "renewal",
                                                                    "stages": {"1": "won", "2": "lost"}}}}})
    portal = {"555": {"1": "lost", "3": "won"}, "default": {"closedwon": "won", "contractsent": "lost"}}

    def stage(pipeline: str, stage_id: str, with_portal: bool = True):
        return config.deal_type_and_stage(pipeline, stage_id, None, portal if with_portal else None)

    assert stage("555", "1") == ("renewal", "won", "config")
    assert stage("555", "2") == ("renewal", "lost", "config")
    assert stage("555", "3") == ("renewal", "won", "hubspot")
    assert stage("555", "4") == ("renewal", "open", "unlisted")
    assert stage("default", "closedwon") == ("new", "won", "defaults")
    assert stage("default", "contractsent") == ("new", "lost", "hubspot")
    assert stage("default", "contractsent", with_portal=False) == ("new", "open", "defaults")
    assert stage("99", "1") is None


EMEA = ("44556677", "Renewals - EMEA", [("2001", "Renewal due", {"isClosed": "false", "probability": "0.6"}),
                                         ("2002", "Renewed", {"isClosed": "true", "probability": "1.0"}),
                                         ("2003", "Churned", {"isClosed": "true", "probability": "0.0"})])


@pytest.mark.parametrize("unlisted", ["by_deal_type", "skip"])
def test_deals_in_a_pipeline_the_config_does_not_list_are_read_by_deal_type_and_named_in_one_warning(
        unlisted, config, tmp_path, capsys, monkeypatch):
    """Renewals that also live in a second pipeline the config does not list ("Renewals - EMEA"): a churned renewal
    there must not vanish. Each deal whose deal type property maps (existingbusiness: renewal, case ignored) and whose
    stage HubSpot's pipeline metadata maps is read; one with an empty or unmapped deal type is left out and counted
    (never guessed from the pipeline's name). One warning names the pipeline by label and id with its counts, and
    the manifest records it; deals.unlisted_pipelines: skip leaves them all out, still named and counted."""
    tables = companies_only(6)
    portal = seed_portal(tables, config)
    portal.define_pipeline("deals", *EMEA)
    moves = [("2002", "existingbusiness"), ("2003", "EXISTINGBUSINESS"), ("2001", "existingbusiness"), ("2003", ""),
             ("2002", "partner")]
    for deal_id, (stage, deal_type) in zip(sorted(portal.objects["deals"]), moves, strict=False):
        portal.objects["deals"][deal_id]["properties"].update(pipeline=EMEA[0], dealstage=stage, dealtype=deal_type)
    (tmp_path / "portal.yml").write_text(yaml.safe_dump({"deals": {"unlisted_pipelines": unlisted}}))
    code, _ = pull_cli(portal, tmp_path, monkeypatch, "--config", str(tmp_path / "portal.yml"),
                       "--usage", str(usage_file(tables, tmp_path)))
    assert code == 0
    how, counts, read = (("read where the deal type property and HubSpot's stage metadata classify them, else left "
                          "out", "5 (read: renewal 3; left out 2)", 3) if unlisted == "by_deal_type"
                         else ("left out (deals.unlisted_pipelines: skip)", "5 left out", 0))
    out = capsys.readouterr().out
    assert [line.strip() for line in out.splitlines() if "pipeline(s) the portal config does not list" in line] == [
        f"warning: deals: 5 deal(s) in pipeline(s) the portal config does not list, {how}: Renewals - EMEA (44556677) "
        f"{counts}; list each pipeline under deals.pipelines with its deal_type to read all its deals"]
    pulled = load_snapshot(tmp_path / "pulled")
    assert pulled.manifest.extra["hubspot"]["unlisted_pipelines"] == {
        "44556677": {"label": "Renewals - EMEA", "deals": 5, "read": read}}
    assert pulled.manifest.extra["hubspot"]["skipped"][
        "deals in pipeline 44556677 (Renewals - EMEA), which the portal config does not map (deals.pipelines)"] == 5 - read
    deals = pulled["deals"].sort("deal_id")
    assert deals["stage"].to_list() == (["won", "lost", "open", "won"] if read else ["won"])
    assert deals["deal_type"].unique().to_list() == ["renewal"]


def test_unquoted_pipeline_and_stage_ids_in_the_users_yaml_merge_with_the_quoted_ones(tmp_path):
    """YAML reads an unquoted id (`75318642:`) as a number: the user's pipeline must still merge with the built-in
    one of the same id (its deal_type and stages kept), and a numeric stage id must match HubSpot's text id."""
    (tmp_path / "portal.yml").write_text("deals:\n  pipelines:\n    75318642:\n      stages: {130009: won}\n"
                                         "    555:\n      deal_type: renewal\n      stages: {7: lost}\n")
    config = load_config(tmp_path / "portal.yml")
    assert list(config.pipelines) == ["default", "75318642", "555"]
    assert config.deal_type_and_stage("75318642", "130002", None) == ("renewal", "won", "defaults")
    assert config.deal_type_and_stage("75318642", "130009", None) == ("renewal", "won", "config")
    assert config.deal_type_and_stage("555", "7", None) == ("renewal", "lost", "config")
    assert config.set_by_user("deals", "pipelines", "555")
    assert load_config(overrides={"deals": {"pipelines": {75318642: {"stages": {130001: "lost"}}}}}
                       ).deal_type_and_stage("75318642", "130001", None) == ("renewal", "lost", "config")


def test_portal_values_yes_no_on_hold_and_leading_zeros_map_as_written(tmp_path):
    """Portal values written as YAML keys map the portal's text as written: YAML 1.1 reads Yes, No and On as
    booleans and 0012 as the octal number 10, which matched neither "Yes" nor "0012" from HubSpot."""
    (tmp_path / "portal.yml").write_text(
        "tickets:\n  values:\n    escalated: {Yes: true, No: false}\n"
        "    priority: {On hold: low, 0012: high, 1.0: urgent}\n"
        "deals:\n  deal_type_values: {Yes: renewal, No: new}\n"
        "  pipelines:\n    default:\n      stages: {No: lost, On: won}\n", encoding="utf-8")
    config = load_config(tmp_path / "portal.yml")
    tickets = config.table("tickets")
    assert [tickets.to_canonical("escalated", raw) for raw in ("Yes", "No", "yes")] == [True, False, True]
    assert [tickets.to_canonical("priority", raw) for raw in ("On hold", "0012", "1.0")] == ["low", "high", "urgent"]
    assert [config.deal_type_of(raw) for raw in ("Yes", "No")] == ["renewal", "new"]
    assert config.deal_type_and_stage("default", "No", None) == ("new", "lost", "config")
    assert config.deal_type_and_stage("default", "On", None) == ("new", "won", "config")


def test_portal_values_match_the_config_whatever_their_case_and_spacing(tmp_path):
    """A value typed into a portal ("Closed  won ", "High\t", " Enterprise ") matches the config's entry and the
    snapshot's allowed values as an association label does: case ignored, spaces around and within read as one.
    An unmapped text value is read without the spaces around it, as a snapshot file's text is, so " Enterprise "
    and "Enterprise" are one tier."""
    (tmp_path / "portal.yml").write_text(
        "tickets:\n  values:\n    priority: {Very high: urgent}\n"
        "deals:\n  deal_type_values: {Existing business: renewal}\n", encoding="utf-8")
    config = load_config(tmp_path / "portal.yml")
    tickets = config.table("tickets")
    assert [tickets.to_canonical("priority", raw) for raw in ("very  HIGH ", "Very high", "\tHIGH")] == [
        "urgent", "urgent", "high"]
    assert config.deal_type_of(" existing\u00a0 Business") == "renewal"
    assert [convert("tickets", "priority", raw, tickets) for raw in ("Very\thigh", " medium ", "P1")] == [
        "urgent", "medium", tickets.defaults.get("priority")]
    assert convert("companies", "tier", " Enterprise ", config.table("companies")) == "Enterprise"


@pytest.mark.parametrize(("written", "read"), [("true", True), ("False", False), ("yes", True), ("no", False),
                                               ("off", False), (None, True)])
def test_push_calculated_property_reads_true_false_and_the_yes_no_words(written, read, tmp_path):
    """push.calculated_property: true/false, or yes/no/on/off as a YAML 1.1 file meant them (text to the loader,
    where "no" would otherwise be a true value); the built-in default when not given."""
    (tmp_path / "portal.yml").write_text("push: {}\n" if written is None else
                                         f"push: {{calculated_property: {written}}}\n", encoding="utf-8")
    assert load_config(tmp_path / "portal.yml").push["calculated_property"] is read


@pytest.mark.parametrize("written", ["maybe", "1", "~", "[true]"])
def test_push_calculated_property_refuses_anything_else_in_one_line(written, tmp_path):
    (tmp_path / "portal.yml").write_text(f"push: {{calculated_property: {written}}}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"push\.calculated_property must be true or false \(got "):
        load_config(tmp_path / "portal.yml")


def test_the_example_portal_config_loads_as_written():
    """portal.example.yml's keys and values read as the text written (its pipeline and stage ids as text)."""
    config = load_config()
    assert config.pipelines["75318642"]["stages"] == {"130001": "open", "130002": "won", "130003": "lost"}
    assert config.table("tickets").values["priority"] == {"LOW": "low", "MEDIUM": "medium", "HIGH": "high",
                                                           "URGENT": "urgent"}
    assert config.push["calculated_property"] is True and config.table("tickets").defaults["escalated"] is False


@pytest.mark.parametrize("status", [403, 404])
def test_pipelines_hubspot_refuses_leave_the_stages_to_the_config_with_one_warning(status, config, tmp_path):
    """A token HubSpot does not let read the pipelines (403), or a server without the endpoint (404): the pull goes
    on as without pipeline metadata, stages the config does not list read as open, and says why in one line."""
    from hsutils.hubspot.sandbox import ApiError

    tables, portal = portal_with_own_renewals_pipeline(config, ["1234567", "1234568"])
    config = load_config(overrides={"deals": {"pipelines": {RENEWALS[0]: {"deal_type": "renewal"}}}})
    body = ({"errors": [{"message": "One or more of the following scopes are required.",
                         "context": {"requiredGranularScopes": ["crm.objects.deals.read"]}}]} if status == 403 else {})

    def refuse(params, out):
        raise ApiError(status, "MISSING_SCOPES" if status == 403 else "OBJECT_NOT_FOUND", "refused", **body)

    result = pull_from(portal, config, usage_file(tables, tmp_path), tmp_path, edits={"_pipelines": refuse})
    lines = [w for w in result.warnings if "pipelines" in w or "stage" in w]
    said = ("the access token lacks the scope(s) crm.objects.deals.read (403 MISSING_SCOPES)" if status == 403
            else "HubSpot answered 404 OBJECT_NOT_FOUND")
    assert len(lines) == 2 and lines[0].startswith(f"read deals pipelines: {said}")
    assert lines[0].endswith("; deals stages the portal config does not list are read as open")
    assert lines[1].startswith("deals: 2 deal(s) in stage(s) the portal config does not list, read as open")
    assert load_snapshot(tmp_path / "pulled")["deals"]["stage"].to_list() == ["open", "open"]


def test_engagement_types_and_feedback_submissions_hubspot_refuses_are_left_out_with_one_warning_each(
        snapshot, config, usage, tmp_path):
    """A token without the feedback submissions scope (a portal without Service Hub's surveys), or without one
    engagement type's: the pull goes on without them, each named in one warning line with HubSpot's answer and in
    the manifest, whether HubSpot refuses the type's properties or only its records; every other table is pulled
    whole. A 403 on a table the snapshot needs (deals) still stops the pull with its one-line error."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    everything = {f"crm.{kind}.{t}.read" for kind in ("objects", "schemas")
                  for t in ("companies", "contacts", "deals", "emails", "meetings", "calls", "notes",
                            "feedback_submissions", "tickets")} | {"tickets", "crm.objects.owners.read"}
    granted = everything - {"crm.schemas.feedback_submissions.read", "crm.objects.feedback_submissions.read",
                            "crm.objects.calls.read"}  # calls: its properties are read, its records refused
    sandbox = Sandbox(portal=portal, scopes=granted)
    sandbox.start()
    try:
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                      progress=False, **FAST)
        sandbox.tokens[sandbox.token] = everything - {"crm.objects.deals.read"}
        with pytest.raises(HubSpotError, match=r"^list deals: the access token lacks the scope\(s\) "
                                               r"crm.objects.deals.read \(403 MISSING_SCOPES\)"):
            pull(tmp_path / "refused", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                 progress=False, **FAST)
    finally:
        sandbox.stop()
    assert [w for w in result.warnings if "not pulled" in w] == [
        "feedback_submissions not pulled (the surveys table is empty): read feedback_submissions properties: the "
        "access token lacks the scope(s) crm.schemas.feedback_submissions.read (403 MISSING_SCOPES); add them to the "
        "private app and use its new token",
        "calls not pulled (the engagements table holds none of them): list calls: the access token lacks the "
        "scope(s) crm.objects.calls.read (403 MISSING_SCOPES); add them to the private app and use its new token"]
    pulled = load_snapshot(tmp_path / "pulled")
    assert pulled.manifest.extra["hubspot"]["not_pulled"] == ["calls", "feedback_submissions"]
    assert pulled["surveys"].height == 0
    expected = snapshot["engagements"].filter(pl.col("type") != "call")
    assert canonical(pulled["engagements"], "engagements").equals(canonical(expected, "engagements"))
    for table in ("companies", "contacts", "deals", "tickets"):
        assert canonical(pulled[table], table).equals(canonical(snapshot[table], table)), table


def test_a_resumed_pull_maps_stages_with_the_pipelines_its_first_run_read(config, tmp_path):
    """The pipeline metadata is kept in the checkpoint with the pages: a pull resumed after an outage maps the deals
    it read before with the metadata read then (and asks HubSpot for it no more), not with what changed since."""
    from hsutils.hubspot.sandbox import ApiError

    tables, portal = portal_with_own_renewals_pipeline(config, ["1234567", "1234568"])
    config = load_config(overrides={"deals": {"pipelines": {RENEWALS[0]: {"deal_type": "renewal"}}}})
    usage = usage_file(tables, tmp_path)
    sandbox = Sandbox(portal=portal)
    original = sandbox._assoc_batch_read

    def down_for_deals(params, **kwargs):
        if params["from"] == "deals":
            raise ApiError(503, "SERVICE_UNAVAILABLE", "outage")
        return original(params=params, **kwargs)

    sandbox._assoc_batch_read = down_for_deals
    sandbox.start()
    try:
        with pytest.raises(HubSpotError):
            pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                 progress=False, retries=1, **FAST)
        assert sandbox.counts["GET /crm/v3/pipelines/{type}"] == 1
        sandbox._assoc_batch_read = original
        renewed = portal.pipelines["deals"][-1]["stages"][1]
        renewed["metadata"] = {"isClosed": "false", "probability": "0.9"}  # changed in HubSpot meanwhile
        sandbox.reset_counts()
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                      progress=False, **FAST)
    finally:
        sandbox.stop()
    assert result.resumed and sandbox.counts["GET /crm/v3/pipelines/{type}"] == 0
    assert load_snapshot(tmp_path / "pulled")["deals"].sort("deal_id")["stage"].to_list() == ["won", "lost"]


def contract_chain_tables() -> dict[str, pl.DataFrame]:
    """Four companies, each with a won new deal for 2024 and the renewal of it for 2025 (10000: won, 10001: lost,
    10002: won with an amount), and 10003 with only a won new deal."""
    tables = companies_only(4)
    day = lambda y, m, d: datetime(y, m, d, tzinfo=UTC)  # noqa: E731
    rows = []
    for i, cid in enumerate(["10000", "10001", "10002"]):
        rows.append(("1" + cid, cid, "new", "won", day(2024, 1, 1), day(2025, 1, 1), day(2023, 12, 15), 12_000.0 + i))
        rows.append(("2" + cid, cid, "renewal", "lost" if cid == "10001" else "won", day(2025, 1, 1), day(2026, 1, 1),
                     day(2024, 12, 10), 12_500.0 + i))
    rows.append(("110003", "10003", "new", "won", day(2024, 1, 1), day(2025, 1, 1), day(2023, 12, 15), 9_000.0))
    columns = ["deal_id", "company_id", "deal_type", "stage", "term_start", "term_end", "close_date", "arr"]
    tables["deals"] = pl.DataFrame([dict(zip(columns, r, strict=True), seats=10) for r in rows],
                                   schema=TABLES["deals"].polars_schema)
    return tables


def test_a_renewal_closed_without_an_amount_carries_the_arr_of_the_term_it_renews(config, tmp_path, capsys,
                                                                                  monkeypatch):
    """Renewals closed without anyone filling `amount` (a won one, a lost one) keep the contract chain: each carries
    the ARR of the term it renews, counted in one warning line, so the panel keeps the renewed company a customer
    through 2025 with the 2024 term's renewal outcome known (renewed), and the churned one's outcome known (churned),
    instead of both dropping out at the term's end with the outcome unknown. A new deal without an amount and no
    term before it has nothing to carry: it is left out and counted as before."""
    from hsutils.panel import build_panel

    tables = contract_chain_tables()
    portal = seed_portal(tables, config)
    for deal_id in ("210000", "210001", "110003"):
        portal.objects["deals"][deal_id]["properties"]["amount"] = ""
    assert pull_cli(portal, tmp_path, monkeypatch, "--usage", str(usage_file(tables, tmp_path)))[0] == 0
    out = capsys.readouterr().out
    assert "skipped 1: deals without a usable arr" in out
    assert [line.strip() for line in out.splitlines() if "carry" in line] == [
        "warning: deals: 2 renewal or new deal(s) (lost 1, won 1) with amount empty carry the ARR of the term they "
        "renew (the company's previous term ending within 45 days of their start); fill the amount in HubSpot for "
        "the ARR they were closed at"]
    pulled = load_snapshot(tmp_path / "pulled")
    arr = dict(pulled["deals"].select("deal_id", "arr").iter_rows())
    assert arr == {"110000": 12_000.0, "210000": 12_000.0, "110001": 12_001.0, "210001": 12_001.0,
                   "110002": 12_002.0, "210002": 12_502.0}

    panel = build_panel(pulled, as_of_dates=["2024-11-01", "2025-06-01"], signals=["days_to_renewal"])
    rows = {(r["company_id"], r["as_of"].date().isoformat()): r for r in panel.iter_rows(named=True)}
    assert rows[("10000", "2025-06-01")]["arr"] == 12_000.0  # still a customer, renewed
    assert ("10001", "2025-06-01") not in rows  # churned
    assert rows[("10000", "2024-11-01")]["outcome_churned"] == 0
    assert rows[("10001", "2024-11-01")]["outcome_churned"] == 1


def test_a_won_expansion_closed_without_an_amount_counts_as_an_expansion_with_arr_0(config, tmp_path, capsys,
                                                                                   monkeypatch):
    """A won expansion whose amount nobody filled still happened: it is kept with ARR 0 (its ARR unknown, none
    added), so the company's outcome_expanded is 1 and its seats are contracted, counted in one warning line; it
    was left out, which read the company as never expanding. An open expansion without an amount adds nothing in
    force: it is still left out and counted."""
    from hsutils.panel import build_panel

    tables = companies_only(2)
    day = lambda y, m, d: datetime(y, m, d, tzinfo=UTC)  # noqa: E731
    expansions = pl.DataFrame([
        {"deal_id": "30000", "company_id": "10000", "deal_type": "expansion", "stage": "won", "term_start":
         day(2025, 6, 15), "term_end": day(2026, 1, 1), "close_date": day(2025, 6, 15), "arr": 3_000.0, "seats": 5},
        {"deal_id": "30001", "company_id": "10001", "deal_type": "expansion", "stage": "open", "term_start":
         day(2025, 6, 15), "term_end": day(2026, 1, 1), "close_date": None, "arr": 3_000.0, "seats": 5}],
        schema=TABLES["deals"].polars_schema)
    terms = tables["deals"].with_columns(close_date=pl.lit(day(2024, 12, 15)))  # each a term for 2025
    tables["deals"] = pl.concat([terms, expansions])
    portal = seed_portal(tables, config)
    for deal_id in ("30000", "30001"):
        portal.objects["deals"][deal_id]["properties"]["amount"] = ""
    assert pull_cli(portal, tmp_path, monkeypatch, "--usage", str(usage_file(tables, tmp_path)))[0] == 0
    out = capsys.readouterr().out
    assert "skipped 1: deals without a usable arr" in out
    assert [line.strip() for line in out.splitlines() if "warning" in line and "expansion" in line] == [
        "warning: deals: 1 won expansion deal(s) with amount empty are kept with ARR 0: they count as expansions and "
        "add their seats, but their ARR is unknown and not added; fill the amount in HubSpot"]
    pulled = load_snapshot(tmp_path / "pulled")
    assert pulled["deals"].filter(pl.col("deal_type") == "expansion").select("deal_id", "arr", "seats").rows() == [
        ("30000", 0.0, 5)]
    panel = build_panel(pulled, as_of_dates=["2025-05-01", "2025-07-01"], signals=["seat_utilisation"])
    rows = {(r["company_id"], r["as_of"].date().isoformat()): r for r in panel.iter_rows(named=True)}
    assert rows[("10000", "2025-05-01")]["outcome_expanded"] == 1
    assert rows[("10001", "2025-05-01")]["outcome_expanded"] == 0
    assert (rows[("10000", "2025-07-01")]["contracted_seats"], rows[("10000", "2025-07-01")]["arr"]) == (15, 12_000.0)


@pytest.mark.parametrize(("stage", "amounts", "carried"), [
    ("won", {"1": 100.0, "2": None, "3": None}, {"2": 100.0, "3": 100.0}),  # a chain of renewals without amounts
    ("open", {"1": 100.0, "2": None, "3": None}, {"2": 100.0, "3": None}),  # an open term renews nothing yet
])
def test_carried_arr_follows_the_chain_of_won_terms(stage, amounts, carried):
    from hsutils.hubspot.pull import carry_renewed_term_arr

    day = lambda y: datetime(y, 1, 1, tzinfo=UTC)  # noqa: E731
    rows = [{"deal_id": "1", "company_id": "c", "deal_type": "new", "stage": "won", "term_start": day(2023),
             "term_end": day(2024), "arr": amounts["1"]},
            {"deal_id": "2", "company_id": "c", "deal_type": "renewal", "stage": stage, "term_start": day(2024),
             "term_end": day(2025), "arr": amounts["2"]},
            {"deal_id": "3", "company_id": "c", "deal_type": "renewal", "stage": "won", "term_start": day(2025),
             "term_end": day(2026), "arr": amounts["3"]},
            {"deal_id": "4", "company_id": "c", "deal_type": "expansion", "stage": "won", "term_start": day(2024),
             "term_end": day(2025), "arr": None}]
    carry_renewed_term_arr(rows, {"2", "3", "4"})
    assert {r["deal_id"]: r["arr"] for r in rows[1:3]} == carried
    assert rows[3]["arr"] is None  # an expansion adds ARR of its own: nothing to carry

def test_add_months_keeps_the_day_or_the_months_last():
    from hsutils.hubspot.pull import add_months

    assert add_months(datetime(2025, 11, 15, 9, tzinfo=UTC), 12) == datetime(2026, 11, 15, 9, tzinfo=UTC)
    assert add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2025, 12, 31, tzinfo=UTC), 14) == datetime(2027, 2, 28, tzinfo=UTC)


def test_a_deal_property_the_config_sets_to_null_takes_the_fallback():
    from hsutils.hubspot.pull import check_needed_properties

    class EveryProperty:  # a reader of a portal holding every property
        def property_groups(self, object_type: str) -> EveryProperty:
            return self

        def __contains__(self, name: str) -> bool:
            return True

    assert check_needed_properties(load_config(), EveryProperty()) == {}
    config = load_config(overrides={"deals": {"properties": {"seats": None}}})
    assert check_needed_properties(config, EveryProperty()) == {
        "seats": "deals: the config names no seats property: seats are not recorded, so seat utilisation is unknown; "
                 "name the seats property in --config (deals.properties.seats)"}


def test_cli_pull_without_config_of_a_stock_portal_exits_0_and_a_config_naming_the_property_is_refused(
        tmp_path, capsys, monkeypatch):
    """`hsutils pull --out DIR --host URL`, the documented interface, on a portal without the custom term and seat
    properties pulls (exit 0) and warns; the same property named in the user's own --config is still refused."""
    from hsutils.cli import main

    tables = companies_only(4)
    portal = seed_portal(tables, load_config())
    for name in ("contract_start_date", "contract_end_date", "seat_count"):
        portal.properties["deals"].pop(name)
        for record in portal.objects["deals"].values():
            record["properties"].pop(name)
    sandbox = Sandbox(portal=portal, token="good-token")
    sandbox.start()
    try:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
        base = ["--host", sandbox.url, "--rate", "off", "--quiet"]
        assert main(["pull", "--out", str(tmp_path / "pulled"), *base]) == 0
        out = capsys.readouterr().out
        assert all(f"warning: {w}" in out for w in STOCK_DEAL_WARNINGS)
        (tmp_path / "portal.yml").write_text("deals:\n  properties:\n    term_start: contract_start_date\n")
        assert main(["pull", "--out", str(tmp_path / "refused"), *base, "--config", str(tmp_path / "portal.yml")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "deals.properties.term_start names contract_start_date" in err
    finally:
        sandbox.stop()
    deals = load_snapshot(tmp_path / "pulled")["deals"]
    assert deals["term_start"].to_list() == [datetime(2025, 12, 1, tzinfo=UTC)] * 4
    assert deals["term_end"].to_list() == [datetime(2026, 12, 1, tzinfo=UTC)] * 4
    assert deals["seats"].to_list() == [0] * 4


def stock_portal(tables: dict[str, pl.DataFrame], config) -> Portal:
    """A portal seeded with `tables` holding only HubSpot's default deal properties (no contract term or seats)."""
    portal = seed_portal(tables, config)
    for name in ("contract_start_date", "contract_end_date", "seat_count"):
        portal.properties["deals"].pop(name)
        for record in portal.objects["deals"].values():
            record["properties"].pop(name, None)
    return portal


def test_a_renewal_closed_before_the_term_it_renews_ended_starts_at_its_end_on_a_stock_portal(config, tmp_path):
    """On a portal without contract term properties a deal's term starts at its close date, but a renewal usually
    closes weeks before the term it renews ends: 10000's renewal is lost 60 days early, 10001's won 70 days early
    and renewed again a year later, 10002's won 10 days after the term ended. A renewal closed within the term in
    force starts at that term's end (chained: the second renewal starts where the first one's shifted term ends),
    so the panel matches the lost one (outcome_churned 1 on the weeks whose horizon holds the term's end, not null)
    and reads no two terms of 10001 side by side; one closed after the term ended keeps its close date."""
    from hsutils.panel import build_panel

    tables = companies_only(3)
    day = lambda y, m, d: datetime(y, m, d, tzinfo=UTC)  # noqa: E731
    rows = [("110000", "10000", "new", "won", day(2024, 1, 1)), ("210000", "10000", "renewal", "lost", day(2024, 11, 2)),
            ("110001", "10001", "new", "won", day(2024, 1, 1)), ("210001", "10001", "renewal", "won", day(2024, 10, 23)),
            ("310001", "10001", "renewal", "won", day(2025, 10, 20)),
            ("110002", "10002", "new", "won", day(2024, 1, 1)), ("210002", "10002", "renewal", "won", day(2025, 1, 11))]
    tables["deals"] = pl.DataFrame(
        [{"deal_id": deal_id, "company_id": cid, "deal_type": deal_type, "stage": stage, "term_start": close,
          "term_end": close + timedelta(days=365), "close_date": close, "arr": 12_000.0, "seats": 10}
         for deal_id, cid, deal_type, stage, close in rows], schema=TABLES["deals"].polars_schema)
    result = pull_from(stock_portal(tables, config), config, usage_file(tables, tmp_path), tmp_path)

    assert result.warnings[0] == (
        "deals: the portal has no contract_start_date property: a deal's term starts at its close date, but 3 "
        "renewal(s) closed before the term they renew ended start at that term's end; name the term start property in --config "
        "(deals.properties.term_start)")
    pulled = load_snapshot(tmp_path / "pulled")
    terms = {r["deal_id"]: (r["term_start"].date().isoformat(), r["term_end"].date().isoformat())
             for r in pulled["deals"].iter_rows(named=True)}
    assert terms == {"110000": ("2024-01-01", "2025-01-01"), "210000": ("2025-01-01", "2026-01-01"),
                     "110001": ("2024-01-01", "2025-01-01"), "210001": ("2025-01-01", "2026-01-01"),
                     "310001": ("2026-01-01", "2027-01-01"),
                     "110002": ("2024-01-01", "2025-01-01"), "210002": ("2025-01-11", "2026-01-11")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel = build_panel(pulled, signals=["days_to_renewal"])
    assert not [str(w.message) for w in caught if "two contract terms" in str(w.message)]
    lost = panel.filter((pl.col("company_id") == "10000") & (pl.col("as_of") > datetime(2024, 10, 3, tzinfo=UTC)))
    assert lost.height > 0 and lost["outcome_churned"].to_list() == [1] * lost.height
    renewed = panel.filter(pl.col("company_id") == "10001").sort("as_of")
    assert renewed["term_end"].is_sorted() and renewed["term_end"].n_unique() == 3
    assert renewed.filter(pl.col("outcome_churned").is_not_null())["outcome_churned"].unique().to_list() == [0]



def test_only_decided_renewals_with_a_filled_term_start_move_to_the_end_of_the_term_in_force_at_their_close():
    """Company a: a chain of renewals closed early (the second renews the first one's moved term). Company b: a
    renewal whose real term end lies before the end it would move to, an open renewal, and one closed after the term
    ended all keep their terms. Company c: of two won terms in force at the close, the renewal starts at the end of
    the latest-ending one, and a renewal with a real term start is never moved."""
    from hsutils.hubspot.pull import empty_deal_values_warning, start_renewals_at_renewed_term_end

    day = lambda y, m, d: datetime(y, m, d, tzinfo=UTC)  # noqa: E731
    rows = [{"deal_id": deal_id, "company_id": deal_id[0], "deal_type": deal_type, "stage": stage, "term_start": start,
             "term_end": end, "close_date": close} for deal_id, deal_type, stage, start, end, close in [
        ("a1", "new", "won", day(2024, 1, 1), day(2025, 1, 1), day(2023, 12, 1)),
        ("a2", "renewal", "won", day(2024, 11, 1), day(2025, 11, 1), day(2024, 11, 1)),
        ("a3", "renewal", "won", day(2025, 11, 3), day(2026, 11, 3), day(2025, 11, 3)),
        ("b1", "new", "won", day(2024, 1, 1), day(2025, 1, 1), day(2024, 1, 1)),
        ("b2", "renewal", "lost", day(2024, 12, 1), day(2024, 12, 31), day(2024, 12, 1)),
        ("b3", "renewal", "open", day(2024, 12, 1), day(2025, 12, 1), None),
        ("b4", "renewal", "won", day(2025, 1, 10), day(2026, 1, 10), day(2025, 1, 10)),
        ("c1", "new", "won", day(2024, 1, 1), day(2025, 1, 1), day(2024, 1, 1)),
        ("c2", "renewal", "won", day(2024, 6, 1), day(2025, 6, 1), day(2024, 3, 1)),
        ("c3", "renewal", "lost", day(2024, 11, 1), day(2025, 11, 1), day(2024, 11, 1))]]
    start_filled = {"a1", "a2", "a3", "b1", "b2", "b3", "b4", "c3"}
    before = {r["deal_id"]: (r["term_start"], r["term_end"]) for r in rows}
    assert start_renewals_at_renewed_term_end(rows, start_filled, start_filled - {"b2"}, 12) == 3
    moved = {r["deal_id"]: (r["term_start"], r["term_end"]) for r in rows if before[r["deal_id"]] != (
        r["term_start"], r["term_end"])}
    assert moved == {"a2": (day(2025, 1, 1), day(2026, 1, 1)), "a3": (day(2026, 1, 1), day(2027, 1, 1)),
                     "c3": (day(2025, 6, 1), day(2026, 6, 1))}
    tmap = load_config().table("deals")
    assert "contract_start_date on 4: a deal's term starts at its close date, but 3 renewal(s) closed before the " \
           "term they renew ended start at that term's end)" in empty_deal_values_warning(Counter(term_start=4), 4, tmap, 12, 3)


def test_a_refused_pull_leaves_an_interrupted_runs_checkpoint_as_it_was(snapshot, config, usage, tmp_path):
    """A pull refused for its configuration writes nothing: the checkpoint an interrupted run left (of the same
    output, another configuration) keeps every page, and the pull run again with the first configuration resumes."""
    sandbox = start(snapshot, config, faults=Faults(outage_after=30))
    checkpoint = tmp_path / "pulled.checkpoint"
    try:
        with pytest.raises(HubSpotError):
            pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                 progress=False, retries=1, **FAST)
        saved = {p: p.read_bytes() for p in checkpoint.rglob("*.json")}
        assert len(saved) > 10
        sandbox.set_faults(Faults())
        wrong = load_config(overrides={"core_events": snapshot.manifest.core_events,
                                       "deals": {"properties": {"seats": "seats_purchased"}}})
        with pytest.raises(InputError, match="seats_purchased"):
            pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=wrong, usage=usage,
                 progress=False, **FAST)
        assert {p: p.read_bytes() for p in checkpoint.rglob("*.json")} == saved
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=usage,
                      progress=False, **FAST)
    finally:
        sandbox.stop()
    assert result.resumed and not checkpoint.exists()


def test_usage_events_without_a_user_are_counted(config, tmp_path):
    """Segment exports anonymous events with an empty user_id: they cannot be kept, and the summary counts them."""
    tables = companies_only(6)
    export = usage_file(tables, tmp_path)
    raw = pl.read_csv(export, infer_schema=False)
    raw.with_columns(pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("user_id"))
                     .alias("user_id")).write_csv(export)
    result = pull_from(seed_portal(tables, config), config, export, tmp_path)
    assert result.rows["usage_events"] == 4
    assert result.skipped == {"usage events without a user or an event": 2}


@pytest.mark.parametrize("as_float", ["text", "parquet"])
def test_usage_export_with_company_ids_as_floats_is_joined(as_float, config, tmp_path):
    """An export that went through pandas or a spreadsheet holds company ids as 10000.0: they are HubSpot's 10000."""
    tables = companies_only(6)
    raw = pl.read_csv(usage_file(tables, tmp_path), infer_schema=False)
    if as_float == "text":
        export = tmp_path / "usage-float.csv"
        raw.with_columns(pl.col("group_id") + ".0").write_csv(export)
    else:
        export = tmp_path / "usage-float.parquet"
        raw.with_columns(pl.col("group_id").cast(pl.Float64)).write_parquet(export)
    result = pull_from(seed_portal(tables, config), config, export, tmp_path)
    assert result.rows["usage_events"] == raw.height and not result.skipped


def test_usage_for_a_domain_several_companies_share_is_left_out_and_counted(config, tmp_path):
    """Two companies with one domain (a subsidiary): an event joined on that domain cannot tell whose it is."""
    tables = companies_only(6)
    sandbox = Sandbox(portal=seed_portal(tables, config))
    sandbox.start()
    try:
        records = sandbox.portal.objects["companies"]
        first, second = sorted(records)[:2]
        records[second]["properties"]["domain"] = records[first]["properties"]["domain"]
        domains = {r["company_id"]: r["domain"] for r in sandbox_domains(sandbox)}
        export = write_usage_export(tables["usage_events"], tmp_path / "events.parquet", "amplitude")
        raw = pl.read_parquet(export)
        raw.with_columns(pl.col("account_id").replace_strict(domains).alias("company_domain")).drop(
            "account_id").write_parquet(export)
        result = pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, usage=export,
                      progress=False, **FAST)
    finally:
        sandbox.stop()
    assert result.skipped == {"usage events for a domain several companies share": 2}
    kept = load_snapshot(tmp_path / "pulled")["usage_events"]["company_id"].cast(pl.String)
    assert kept.len() == 4 and first not in kept.to_list() and second not in kept.to_list()


def test_pull_as_designed_without_a_usage_export(snapshot, config, usage, tmp_path, capsys, monkeypatch):
    """`hsutils pull --out DIR --host URL` (the documented interface, token from the environment) pulls the portal
    without a usage export: usage_events is empty, core_events too, and the summary warns. A portal config naming
    `usage.file` (relative to the config file) gives the export instead."""
    from hsutils.cli import main
    from hsutils.hubspot.pull import NO_USAGE_WARNING

    sandbox = start(snapshot, config, token="good-token")
    try:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
        assert main(["pull", "--out", str(tmp_path / "crm-only"), "--host", sandbox.url, "--quiet"]) == 0
        printed = capsys.readouterr().out
        (tmp_path / "conf").mkdir()
        shutil.copy(usage, tmp_path / "conf" / "events.csv")
        (tmp_path / "conf" / "portal.yml").write_text(yaml.safe_dump(
            {"core_events": snapshot.manifest.core_events, "usage": {"file": "events.csv"}}))
        assert main(["pull", "--out", str(tmp_path / "with-usage"), "--host", sandbox.url, "--quiet", "--rate", "off",
                     "--config", str(tmp_path / "conf" / "portal.yml")]) == 0
    finally:
        sandbox.stop()
    assert f"warning: {NO_USAGE_WARNING}" in printed and "usage_events 0" in printed
    crm_only = load_snapshot(tmp_path / "crm-only")
    assert crm_only["usage_events"].height == 0 and crm_only.manifest.core_events == []
    for table in TABLES:
        if table != "usage_events":
            assert canonical(crm_only[table], table).equals(canonical(snapshot[table], table)), table
    with_usage = load_snapshot(tmp_path / "with-usage")
    assert canonical(with_usage["usage_events"], "usage_events").equals(
        canonical(snapshot["usage_events"], "usage_events"))


def test_a_pull_refuses_up_front_a_checkpoint_folder_that_is_not_one_and_a_missing_usage_export(config, tmp_path):
    """A pull deletes its checkpoint folder when it replaces or finishes it: --checkpoint naming a folder of other
    files is refused before any request, and its files stay. A usage export that does not exist is refused before the
    portal is read, not after every object was pulled."""
    tables = companies_only(3)
    sandbox = Sandbox(portal=seed_portal(tables, config))
    sandbox.start()
    mine = tmp_path / "my-work"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    try:
        with pytest.raises(InputError, match="is not a pull checkpoint"):
            pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config, checkpoint=mine,
                 usage=usage_file(tables, tmp_path), progress=False, **FAST)
        with pytest.raises(InputError, match=r"usage export .*events-typo\.csv does not exist"):
            pull(tmp_path / "pulled", host=sandbox.url, token=sandbox.token, config=config,
                 usage=tmp_path / "events-typo.csv", progress=False, **FAST)
        assert sum(sandbox.counts.values()) == 0
    finally:
        sandbox.stop()
    assert (mine / "notes.txt").read_text() == "keep me" and not (tmp_path / "pulled").exists()


# ----- answers shaped as real HubSpot (or a stand-in built from its docs) gives them ------------------------------
def _one(frame: pl.DataFrame, key: str, value: str, column: str):
    return frame.filter(pl.col(key) == value)[column].to_list()


def test_property_values_as_hubspot_sends_them(snapshot, config, usage, tmp_path):
    """Every property value comes as text: numbers "24000.0" or "24000.5", "" for a cleared value, checkboxes
    "true"/"false", date properties "2025-01-01", datetimes with or without milliseconds, epoch milliseconds (older
    portals and imports, sometimes as "1700000000000.0"), NPS scores "8" or "8.0". Each is read as its value; a
    number no column can hold ("Infinity") is unreadable, so its record is left out and counted."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    companies = [portal.objects["companies"][i]["properties"] for i in portal.order["companies"][:5]]
    companies[0]["numberofemployees"] = "24000.0"
    companies[1]["createdate"] = "1700000000000"
    companies[2]["createdate"] = "1700000000000.0"
    companies[3]["createdate"] = "2023-11-23"
    companies[4]["customer_tier"] = ""
    won = [i for i in portal.order["deals"] if portal.objects["deals"][i]["properties"]["dealstage"] in ("closedwon",
                                                                                                         "130002")]
    deal = {i: portal.objects["deals"][i]["properties"] for i in won[:3]}
    deal[won[0]].update(amount="24000.5", contract_start_date="2025-01-01", contract_end_date="2026-01-01")
    deal[won[1]].update(seat_count="12.0", closedate="1735689600000")
    deal[won[2]]["seat_count"] = "Infinity"
    tickets = portal.order["tickets"][:2]
    portal.objects["tickets"][tickets[0]]["properties"].update(escalated="true", csat_score="4.0")
    portal.objects["tickets"][tickets[1]]["properties"]["escalated"] = ""
    emails = portal.order["emails"][:3]
    portal.objects["emails"][emails[0]]["properties"]["hs_timestamp"] = "2025-03-01T14:05:00Z"
    portal.objects["emails"][emails[1]]["properties"]["hs_timestamp"] = "1740837900123"
    portal.objects["emails"][emails[2]]["properties"]["hs_email_open_count"] = "3"
    nps = [i for i, r in portal.objects["feedback_submissions"].items() if r["properties"]["hs_survey_type"] == "NPS"]
    portal.objects["feedback_submissions"][nps[0]]["properties"]["hs_value"] = "8.0"
    portal.objects["feedback_submissions"][nps[1]]["properties"]["hs_value"] = "8"
    result = pull_from(portal, config, usage, tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")
    ids = portal.order["companies"][:5]
    epoch = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert _one(pulled["companies"], "company_id", ids[0], "employees") == [24000]
    assert _one(pulled["companies"], "company_id", ids[1], "created_at") == [epoch]
    assert _one(pulled["companies"], "company_id", ids[2], "created_at") == [epoch]
    assert _one(pulled["companies"], "company_id", ids[3], "created_at") == [datetime(2023, 11, 23, tzinfo=UTC)]
    assert _one(pulled["companies"], "company_id", ids[4], "tier") == ["unknown"]
    deals = pulled["deals"]
    assert deals.filter(pl.col("deal_id") == won[0]).select("arr", "term_start", "term_end").row(0) == (
        24000.5, datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert deals.filter(pl.col("deal_id") == won[1]).select("seats", "close_date").row(0) == (
        12, datetime(2025, 1, 1, tzinfo=UTC))
    assert won[2] not in deals["deal_id"].to_list()
    assert _one(pulled["tickets"], "ticket_id", tickets[0], "escalated") == [True]
    assert _one(pulled["tickets"], "ticket_id", tickets[0], "csat") == [4]
    assert _one(pulled["tickets"], "ticket_id", tickets[1], "escalated") == [False]
    engagements = pulled["engagements"]
    assert _one(engagements, "engagement_id", emails[0], "occurred_at") == [datetime(2025, 3, 1, 14, 5, tzinfo=UTC)]
    assert _one(engagements, "engagement_id", emails[1], "occurred_at") == [
        datetime(2025, 3, 1, 14, 5, 0, 123000, tzinfo=UTC)]
    assert _one(engagements, "engagement_id", emails[2], "opened") == [True]
    assert pulled["surveys"].filter(pl.col("response_id").is_in(nps[:2]))["score"].to_list() == [8.0, 8.0]
    assert result.skipped == {"deals without a usable seats": 1}


def test_epoch_placeholders_in_property_values_are_read_as_unset(snapshot, config, tmp_path):
    """Integrations write the Unix epoch for a date never set ("0", "1970-01-01", "1970-01-01T00:00:00Z"): the pull
    reads each as an empty property, by the rule snapshot files are read with, with one warning per property (a
    term start then falls back to the close date; a won deal with neither is left out and counted; an activity
    takes its record's creation time), and usage events at the epoch are left out. No table holds a 1970 date and
    the panel's weekly as-of dates no longer start in 1970."""
    from hsutils.panel import default_as_of_dates, first_customer_moment

    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    deals = portal.objects["deals"]
    won = [i for i in portal.order["deals"] if deals[i]["properties"]["dealstage"] in ("closedwon", "130002")]
    deals[won[0]]["properties"].update(contract_start_date="0", closedate="1970-01-01T00:00:00Z")
    deals[won[1]]["properties"]["contract_start_date"] = "1970-01-01"
    ticket = portal.order["tickets"][0]
    portal.objects["tickets"][ticket]["properties"]["closed_date"] = "0"
    email = portal.order["emails"][0]
    portal.objects["emails"][email]["properties"]["hs_timestamp"] = "1970-01-01T00:00:00.000Z"
    usage = write_usage_export(snapshot["usage_events"], tmp_path / "events.csv", style="mixpanel")
    usage_rows = pl.read_csv(usage)
    usage_rows.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(0).otherwise(pl.col("time")).alias("time")
                            ).write_csv(usage)

    result = pull_from(portal, config, usage, tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")

    said = "\n".join(result.warnings)
    for line in (r"table deals, column term_start \(deals property contract_start_date\): 2 value\(s\) 0 or 1970-01-01 "
                 r"read as empty \(0 as an epoch time is 1970-01-01; .*: a placeholder for unset\)",
                 r"table deals, column close_date \(deals property closedate\): 1 value\(s\) 1970-01-01 read as empty",
                 r"table tickets, column closed_at \(tickets property closed_date\): 1 value\(s\) 0 read as empty",
                 r"table engagements, column occurred_at \(emails property hs_timestamp\): 1 value\(s\) 1970-01-01"):
        assert len(re.findall(line, said)) == 1, (line, said)
    assert result.skipped["deals without a usable term_start"] == 1
    assert result.skipped["usage events at 1970-01-01 (epoch time 0, a placeholder for a time never set)"] == 3
    assert won[0] not in pulled["deals"]["deal_id"].to_list()
    start, close = pulled["deals"].filter(pl.col("deal_id") == won[1]).select("term_start", "close_date").row(0)
    assert start.year > 1970 and start >= close
    assert _one(pulled["tickets"], "ticket_id", ticket, "closed_at") == [None]
    created = datetime.fromisoformat(portal.objects["emails"][email]["createdAt"].replace("Z", "+00:00"))
    assert _one(pulled["engagements"], "engagement_id", email, "occurred_at") == [created]
    for table, frame in pulled.tables.items():
        for column, dtype in frame.schema.items():
            if isinstance(dtype, pl.Datetime) and frame.height:
                assert frame[column].min().year > 1970, (table, column)
    assert default_as_of_dates(pulled)[0] > first_customer_moment(snapshot) - timedelta(weeks=1)


@pytest.mark.parametrize("word", ["on", "ON", "✓", "Yes", "1.0", "off", "✗", "No", "0"])
def test_a_yes_no_word_means_the_same_in_the_pull_as_in_snapshot_files(word):
    """One meaning of yes and no across the suite: a checkbox or dropdown value the pull reads ("on", "✓") is read
    as a tickets.csv file with the same value is (validate's words); a word saying neither takes the default."""
    from hsutils.hubspot.pull import convert, to_bool
    from hsutils.validate import coerce_table

    tmap = load_config().table("tickets")
    frame = pl.DataFrame({"ticket_id": ["1"], "company_id": ["2"], "created_at": ["2025-01-01"], "priority": ["low"],
                          "sentiment": ["neutral"], "escalated": [word]})
    assert convert("tickets", "escalated", word, tmap) is coerce_table(frame, "tickets")["escalated"][0]
    assert convert("tickets", "escalated", "perhaps", tmap) is False  # the config's default (escalated: false)
    for neither in ("nan", "NaN", "inf"):  # numbers that say neither yes nor no: the default too, not False / True
        assert convert("tickets", "escalated", neither, tmap) is False
    assert [to_bool(v) for v in ("nan", "inf", "-inf", "2", "0")] == [None, None, None, True, False]


def test_a_property_with_a_default_empty_on_every_record_is_named_in_one_warning(snapshot, config, usage, tmp_path):
    """A portal where nobody sets ticket priority (hs_ticket_priority empty or null on every ticket, tickets spread
    over several ticket pipelines): every ticket is read as the config's default priority, medium, which the snapshot
    would show as data; the summary says so in one line. A property empty on only some records (sentiment) is the
    default there without a warning, as the config documents."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    for i, ticket in enumerate(portal.objects["tickets"].values()):
        ticket["properties"].update(hs_ticket_priority="" if i % 2 else None, hs_pipeline=str(i % 3))
        if i % 4 == 0:
            ticket["properties"]["ticket_sentiment"] = ""
    result = pull_from(portal, config, usage, tmp_path)
    tickets = load_snapshot(tmp_path / "pulled")["tickets"]
    assert tickets.height == snapshot["tickets"].height and set(tickets["priority"]) == {"medium"}
    assert [w for w in result.warnings if "empty on all" in w] == [
        f"tickets: hs_ticket_priority is empty on all {tickets.height:,} records, so priority is the config's default "
        "(medium) on every one; fill it in HubSpot or map the portal's own property in --config"]


def test_survey_responses_are_read_from_hubspots_own_feedback_submission_properties(snapshot, config, usage,
                                                                                   tmp_path):
    """HubSpot's feedback submissions hold the answer in hs_value and the submission time in hs_submission_timestamp
    (with hs_survey_type NPS, CSAT, ...): a pull with the built-in defaults reads them. The defaults named a score
    property no portal has, so every pull of a portal with survey responses stopped before reading anything."""
    own = {"surveys": {"properties": {"submitted_at": "hs_submission_timestamp", "score": "hs_value"}}}
    portal = seed_portal(snapshot.tables, load_config(overrides=own), snapshot.manifest.created_at)
    assert {"hs_value", "hs_submission_timestamp", "hs_survey_type"} <= set(portal.properties["feedback_submissions"])
    assert "hs_response_value" not in portal.properties["feedback_submissions"]
    pull_from(portal, config, usage, tmp_path)
    pulled = load_snapshot(tmp_path / "pulled")
    assert canonical(pulled["surveys"], "surveys").equals(canonical(snapshot["surveys"], "surveys"))


def test_values_the_config_does_not_map_are_named_in_one_warning_per_property(snapshot, config, usage, tmp_path):
    """A portal's own ticket priorities ("P1", "Critical") read as the default medium, and survey types the snapshot
    has no place for (CES, CUSTOM: not an NPS or CSAT score) are left out: each property's unmapped values are
    named with their counts in one warning line, so neither passes as data. A value differing only in case or
    spaces around it ("Low ", "high") is mapped."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    tickets = portal.order["tickets"][:5]
    for ticket_id, priority in zip(tickets, ["P1", "Critical", "P1", "Low ", "high"], strict=True):
        portal.objects["tickets"][ticket_id]["properties"]["hs_ticket_priority"] = priority
    responses = portal.order["feedback_submissions"][:3]
    for response_id, kind in zip(responses, ["CES", "CES", "CUSTOM"], strict=True):
        portal.objects["feedback_submissions"][response_id]["properties"]["hs_survey_type"] = kind
    result = pull_from(portal, config, usage, tmp_path)
    assert [w for w in result.warnings if "does not map to" in w] == [
        "tickets: hs_ticket_priority holds value(s) the config does not map to low, medium, high, urgent: P1 (2), "
        "Critical (1); read as the default medium; map them under tickets.values.priority in --config",
        "feedback_submissions: hs_survey_type holds value(s) the config does not map to nps, csat: CES (2), "
        "CUSTOM (1); those 3 record(s) are left out (counted); map them under surveys.values.kind in --config"]
    pulled = load_snapshot(tmp_path / "pulled")
    priorities = dict(pulled["tickets"].filter(pl.col("ticket_id").is_in(tickets)).select("ticket_id", "priority")
                      .iter_rows())
    assert [priorities[t] for t in tickets] == ["medium", "medium", "medium", "low", "high"]
    assert result.skipped == {"surveys without a usable kind": 3}
    assert not set(responses) & set(pulled["surveys"]["response_id"])


def test_archived_records_in_a_list_answer_are_left_out_and_counted(snapshot, config, usage, tmp_path):
    """A record answered with archived: true is in HubSpot's recycle bin: it is left out (with what hangs on it)
    and counted. Keys the pull does not use (propertiesWithHistory, url) change nothing."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    gone = portal.order["companies"][0]

    def archive(params, answer):
        for record in answer["results"]:
            record["propertiesWithHistory"] = {"name": [{"value": "Old name", "timestamp": "2024-01-01T00:00:00Z",
                                                         "sourceType": "CRM_UI"}]}
            record["url"] = f"https://app.hubspot.com/contacts/1/record/{record['id']}"
            if params["type"] == "companies" and record["id"] == gone:
                record.update(archived=True, archivedAt="2025-06-01T00:00:00.000Z")

    result = pull_from(portal, config, usage, tmp_path, edits={"_list": archive})
    pulled = load_snapshot(tmp_path / "pulled")
    assert set(snapshot["companies"]["company_id"]) - set(pulled["companies"]["company_id"]) == {gone}
    assert result.skipped["companies archived in HubSpot (left out)"] == 1
    assert pulled["deals"].height == snapshot["deals"].filter(pl.col("company_id") != gone).height


@pytest.mark.parametrize("last_page", ["paging {}", "paging null", "empty page, same cursor",
                                       "empty pages, new cursors", "a record listed twice"])
def test_list_paging_as_servers_end_it(last_page, config, tmp_path):
    """HubSpot ends a list by leaving paging.next out; other servers answer paging: {} or null, or keep handing
    out a cursor with an empty page (the same one, or a new one each time), or list a record twice: the pull reads
    every record once and stops at the first page that brings nothing new."""
    tables = companies_only(150)
    empty_pages: Counter = Counter()

    def end(params, answer):
        if "paging" in answer:
            return
        if last_page == "paging {}":
            answer["paging"] = {}
        elif last_page == "paging null":
            answer["paging"] = None
        elif last_page == "a record listed twice":
            answer["results"] += answer["results"][:1]
        elif empty_pages[params["type"]] < 20:  # (a cap, so that a pull that does not stop still ends the test)
            after = str(150 if last_page == "empty page, same cursor" else 150 + 100 * empty_pages[params["type"]])
            empty_pages[params["type"]] += not answer["results"]
            answer["paging"] = {"next": {"after": after, "link": f"?after={after}"}}

    result = pull_from(seed_portal(tables, config), config, usage_file(tables, tmp_path), tmp_path,
                       edits={"_list": end})
    pulled = load_snapshot(tmp_path / "pulled")
    assert canonical(pulled["companies"], "companies").equals(canonical(tables["companies"], "companies"))
    assert canonical(pulled["deals"], "deals").equals(canonical(tables["deals"], "deals"))
    assert max(empty_pages.values(), default=0) <= 1 and not result.skipped


@pytest.mark.parametrize("shape", ["numeric ids, default type beside the label", "one entry per type",
                                   "not-found errors without a subCategory", "primary labelled Primary",
                                   "primary by type id alone"])
def test_association_answers_as_hubspot_v4_sends_them(shape, snapshot, config, usage, tmp_path):
    """Associations v4 batch reads: from.id a string, toObjectId a number, the unlabeled default type beside
    the primary company's type or a role label; a server may list a target once per association type; an id without
    associations is an error of the 207 answer, which may carry only category OBJECT_NOT_FOUND. The primary company
    is known by its type id whatever its label ("Deal with Primary Company", "Primary", none), and
    the stand-in lists a second, unlabelled company first for some records. Every link and role is kept."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    primary_label = {"primary labelled Primary": "Primary", "primary by type id alone": None}

    def reshape(params, answer):
        for result in answer["results"]:
            result["from"]["id"] = str(result["from"]["id"])
            to = []
            for item in result["to"]:
                types = item["associationTypes"] + [{"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}]
                for t in types:
                    if shape in primary_label and "Primary" in str(t["label"]):
                        t["label"] = primary_label[shape]
                if shape == "one entry per type":
                    to += [{"toObjectId": item["toObjectId"], "associationTypes": [t]} for t in types]
                else:
                    to.append({"toObjectId": item["toObjectId"], "associationTypes": types})
            result["to"] = to
        for error in answer.get("errors") or []:
            if shape == "not-found errors without a subCategory":
                error.pop("subCategory")
                error.update(message="Object not found", context={"ids": error["context"]["fromObjectId"]})

    result = pull_from(portal, config, usage, tmp_path, edits={"_assoc_batch_read": reshape})
    pulled = load_snapshot(tmp_path / "pulled")
    for table in ("contacts", "deals", "engagements", "tickets", "surveys"):
        assert canonical(pulled[table], table).equals(canonical(snapshot[table], table)), table
    assert not result.skipped


def test_the_stand_in_marks_one_primary_company_per_record_as_hubspot_does(snapshot, config):
    """Contacts, deals and tickets have exactly one primary company (HubSpot's primary type id beside the plain
    one); a share is linked to a second company too, plain only and listed first; activities have no primary type;
    making another company primary moves the mark, as in HubSpot."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    types = {"contacts": (279, 1), "deals": (341, 5), "tickets": (339, 26), "emails": (186, None)}
    for object_type, (plain, primary) in types.items():
        links = portal.assoc[(object_type, "companies")]
        assert len(links) == len(portal.objects[object_type]), object_type
        for record_id, linked in links.items():
            assert all(plain in t for t in linked.values()), (object_type, record_id)
            assert sum(primary in t for t in linked.values()) == (primary is not None), (object_type, record_id)
        several = [linked for linked in links.values() if len(linked) > 1]
        assert bool(several) == (primary is not None), object_type
        assert all(primary not in next(iter(linked.values())) for linked in several), object_type
    assert portal.label_of("deals", "companies", 5) == {"category": "HUBSPOT_DEFINED", "typeId": 5,
                                                        "label": "Deal with Primary Company"}
    assert portal.label_of("deals", "companies", 341)["label"] is None
    deal, linked = next((d, linked) for d, linked in portal.assoc[("deals", "companies")].items() if len(linked) > 1)
    other = next(c for c, t in linked.items() if 5 not in t)
    portal.associate("deals", deal, "companies", other)
    assert [c for c, t in portal.assoc[("deals", "companies")][deal].items() if 5 in t] == [other]
    assert [d for d, t in portal.assoc[("companies", "deals")][other].items() if 6 in t].count(deal) == 1
    assert all(6 not in portal.assoc[("companies", "deals")][c][deal] for c in linked if c != other)


@pytest.mark.parametrize("order", ["as the stand-in lists them", "reversed"])
def test_records_linked_to_several_companies_without_a_primary_are_read_once_with_one_warning(
        order, snapshot, config, usage, tmp_path):
    """Records from before primary companies (several companies, none marked primary) and activities (HubSpot marks
    none on them) are read once each, whatever order the links come in: an activity for the company of its contact,
    any other record for the pulled company with the lowest id; one warning counts them."""
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    expected: dict[str, dict[str, str]] = {"contacts": {}, "deals": {}, "tickets": {}}
    for object_type in expected:
        primary, back = ASSOCIATION_TYPES[(object_type, "companies")][1], ASSOCIATION_TYPES[("companies", object_type)][1]
        for record_id, linked in portal.assoc[(object_type, "companies")].items():
            if len(linked) > 1:
                for company, types in linked.items():
                    if primary in types:
                        types.remove(primary)
                        portal.assoc[("companies", object_type)][company][record_id].remove(back)
                expected[object_type][record_id] = min(linked)
    contact_company = dict(snapshot["contacts"].select("contact_id", "company_id").iter_rows())
    contact_company.update(expected["contacts"])
    ticket_contact = dict(snapshot["tickets"].select("ticket_id", "contact_id").iter_rows())
    for ticket in expected["tickets"]:  # an activity: its contact's company where it is linked
        if contact_company.get(ticket_contact[ticket]) in portal.assoc[("tickets", "companies")][ticket]:
            expected["tickets"][ticket] = contact_company[ticket_contact[ticket]]
    lowest = min(snapshot["companies"]["company_id"])
    email_rows = [r for r in snapshot["engagements"].iter_rows(named=True)
                  if r["type"] == "email" and r["company_id"] != lowest and r["company_id"] == contact_company.get(
                      r["contact_id"])][:5]
    for row in email_rows:  # also logged on the company with the lowest id
        portal.associate("emails", row["engagement_id"], "companies", lowest, primary=False)

    def reorder(params, answer):
        for result in answer["results"]:
            result["to"] = result["to"][::-1] if order == "reversed" else result["to"]

    result = pull_from(portal, config, usage, tmp_path, edits={"_assoc_batch_read": reorder})
    pulled = load_snapshot(tmp_path / "pulled")
    for table, id_column in (("contacts", "contact_id"), ("deals", "deal_id"), ("tickets", "ticket_id")):
        got = dict(pulled[table].select(id_column, "company_id").iter_rows())
        assert pulled[table].height == snapshot[table].height == len(got), table
        assert expected[table] and all(got[r] == c for r, c in expected[table].items()), table
    got = dict(pulled["engagements"].select("engagement_id", "company_id").iter_rows())
    assert pulled["engagements"].height == snapshot["engagements"].height == len(got)
    assert all(got[r["engagement_id"]] == r["company_id"] for r in email_rows)
    counted = [w for w in result.warnings if "several companies" in w]
    total = sum(len(v) for v in expected.values()) + len(email_rows)
    assert len(counted) == 1 and counted[0].startswith(f"{total} record(s) linked to several companies")
    assert f"deals {len(expected['deals'])}, emails {len(email_rows)}," in counted[0]


def test_owners_without_email_or_sparse_are_read(config, tmp_path):
    """Owners as HubSpot lists them: one without an email (a queue or an unverified user), one with fewer fields:
    the pull reads them all, and no company's owner is reported unknown."""
    tables = companies_only(6)

    def owners(params, answer):
        if answer["results"]:
            answer["results"][0]["email"] = None
            for key in ("createdAt", "updatedAt", "firstName", "lastName", "teams", "userId"):
                answer["results"][-1].pop(key, None)

    result = pull_from(seed_portal(tables, config), config, usage_file(tables, tmp_path), tmp_path,
                       edits={"_owners": owners})
    assert load_snapshot(tmp_path / "pulled").manifest.extra["hubspot"]["owners"] == 2
    assert not [w for w in result.warnings if "owner" in w] and not result.notes


def companies_with_owners(last_ae_owner: str) -> dict[str, pl.DataFrame]:
    """Six companies (companies_only) whose first two have CS owner 502 (the others 501) and whose last has AE owner
    `last_ae_owner` (the others 601)."""
    tables = companies_only(6)
    tables["companies"] = tables["companies"].with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("502")).otherwise(pl.col("cs_owner_id")).alias("cs_owner_id"),
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit(last_ae_owner)).otherwise(pl.col("ae_owner_id"))
        .alias("ae_owner_id"))
    return tables


def test_deactivated_owners_are_read_and_only_ids_that_are_no_owner_warn(config, tmp_path):
    """A CS owner who left the firm is a deactivated owner, which HubSpot lists only with archived=true: the pull
    reads those too, so their companies raise no "not an owner" warning; the summary notes, in one line, the
    deactivated owners who still own companies (accounts nobody looks after). An id that is no owner at all (a
    property holding names, say) still warns."""
    tables = companies_with_owners(last_ae_owner="Jane Doe")
    portal = seed_portal(tables, config)
    portal.owners = [o for o in portal.owners if o["id"] != "Jane Doe"]
    portal.deactivate_owner("502")
    result = pull_from(portal, config, usage_file(tables, tmp_path), tmp_path)

    hubspot = load_snapshot(tmp_path / "pulled").manifest.extra["hubspot"]
    assert (hubspot["owners"], hubspot["deactivated_owners"], hubspot["deactivated_company_owners"]) == (2, 1, ["502"])
    assert [w for w in result.warnings if "owner" in w] == [
        "1 owner id(s) on companies are no portal owner, active or deactivated, e.g. Jane Doe: check that the owner "
        "properties in --config hold owner ids"]
    assert result.notes == ["1 deactivated owner(s) (users who left) still own 2 companies as CS or AE owner: "
                            "reassign them in HubSpot"]
    assert "  note: 1 deactivated owner(s)" in result.summary()


@pytest.mark.parametrize("export", ["csv", "parquet int64"])
def test_company_ids_beyond_2_53_stay_exact_text(export, config, tmp_path):
    """HubSpot ids are numeric strings that may exceed 2^53 (a float's exact range); a server may send them as
    JSON numbers (toObjectId): they stay text, digit for digit, and the usage export joins on them."""
    tables = companies_only(6)
    big = {old: str(2**53 + 1 + 2 * i) for i, old in enumerate(tables["companies"]["company_id"])}
    for name in ("companies", "deals", "usage_events"):
        tables[name] = tables[name].with_columns(pl.col("company_id").replace_strict(big))
    path = usage_file(tables, tmp_path)
    if export == "parquet int64":
        path = tmp_path / "usage-export.parquet"
        pl.read_csv(usage_file(tables, tmp_path), infer_schema=False).with_columns(
            pl.col("group_id").cast(pl.Int64)).write_parquet(path)

    def numbers(params, answer):
        for result in answer["results"]:
            if "to" in result:
                for item in result["to"]:
                    item["toObjectId"] = int(item["toObjectId"])
            else:
                result["id"] = int(result["id"])

    result = pull_from(seed_portal(tables, config), config, path, tmp_path,
                       edits={"_assoc_batch_read": numbers, "_list": numbers})
    pulled = load_snapshot(tmp_path / "pulled")
    assert sorted(pulled["companies"]["company_id"]) == sorted(big.values())
    assert canonical(pulled["deals"], "deals").equals(canonical(tables["deals"], "deals"))
    assert result.rows["usage_events"] == tables["usage_events"].height and not result.skipped


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "api.hubapi.com", "ftp://api.hubapi.com", "https://"])
def test_a_host_that_is_not_an_http_url_is_one_line_exit_2_at_once(host, tmp_path, capsys, monkeypatch):
    """`--host 127.0.0.1:8765` (no scheme) used to hang in retries to a URL urllib3 cannot reach."""
    from hsutils.cli import main

    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
    assert main(["pull", "--out", str(tmp_path / "pulled"), "--host", host, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not an http(s) URL" in err and repr(host) in err
    assert list(tmp_path.iterdir()) == []


def test_a_host_where_nothing_listens_fails_within_seconds_and_a_server_that_answered_keeps_its_retries(
        tmp_path, capsys, monkeypatch):
    """Connection refused at the first request is a wrong --host far more often than an outage: the pull fails in
    about a second with one line (it took 90 s of connect retries), while a server that has answered once keeps the
    full connect retries (a blip in the middle of a long pull)."""
    import socket
    import time

    from hsutils.cli import main
    from hsutils.hubspot.client import Connection

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    for answered, retries in ((False, 2), (True, 8)):
        conn = Connection(host=url, token="good-token", rate=None, backoff=0.001)
        conn.stats.answered = answered
        with pytest.raises(HubSpotError, match="did not answer after retries"):
            conn.call("read companies properties", conn.api("crm.properties.core_api").get_all, "companies")
        assert conn.stats.retries["connection"] == retries

    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")
    started = time.perf_counter()
    assert main(["pull", "--out", str(tmp_path / "pulled"), "--host", url, "--quiet"]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing answered at that address; check --host" in err
    assert list(tmp_path.iterdir()) == []


# ----- progress bars -----------------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    """A standard error that is a terminal."""

    def isatty(self) -> bool:
        return True


def test_pull_and_push_show_progress_bars_on_a_terminal_only(tmp_path, monkeypatch):
    """Run by a scheduler (standard error a log file or cron mail) pull and push drew their bars into the log,
    redraw after redraw; on a terminal they show, and --quiet still turns them off there."""
    from hsutils.cli import main

    tables = companies_only(30)
    usage = usage_file(tables, tmp_path)
    model = write_model(tmp_path / "model.yml")
    write_scores(tmp_path / "scores.parquet", tables["companies"].get_column("company_id").to_list())
    sandbox = Sandbox(portal=seed_portal(tables, load_config()), token="good-token")
    sandbox.start()
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "good-token")

    def stderr_of(args: list[str], stream: io.StringIO) -> str:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", stream)
            assert main(args) == 0, stream.getvalue()
        return stream.getvalue()

    def pull_args(name: str) -> list[str]:
        return ["pull", "--out", str(tmp_path / name), "--host", sandbox.url, "--rate", "off", "--usage", str(usage)]

    push_args = ["push", "--model", str(model), "--scores", str(tmp_path / "scores.parquet"), "--host", sandbox.url,
                 "--rate", "off"]
    try:
        assert "\r" not in stderr_of(pull_args("to-a-log"), io.StringIO())
        assert "\r" not in stderr_of(push_args, io.StringIO())
        assert "\r" in stderr_of(pull_args("on-a-terminal"), Terminal())
        assert "\r" in stderr_of(push_args, Terminal())
        assert "\r" not in stderr_of([*pull_args("quiet"), "--quiet"], Terminal())
    finally:
        sandbox.stop()


def test_the_pull_records_the_names_of_the_owners_who_own_companies(config, tmp_path):
    """The manifest's `hubspot.owner_names` names each owner who owns a pulled company ("First Last", the email
    when HubSpot has no name, a deactivated one marked so), for the report's account lists; owners who own no
    company are left out, and the canonical tables still hold only owner ids."""
    tables = companies_with_owners(last_ae_owner="602")
    portal = seed_portal(tables, config)
    people = {"501": ("Jane", "Doe", "jane@example.com"), "502": ("Sam", None, "sam@example.com"),
              "601": ("", "", "ae@example.com"), "602": (None, None, None)}
    for owner in portal.owners:
        owner["firstName"], owner["lastName"], owner["email"] = people[owner["id"]]
    portal.owners.append({**portal.owners[0], "id": "777", "firstName": "No", "lastName": "Companies"})
    portal.deactivate_owner("502")
    pull_from(portal, config, usage_file(tables, tmp_path), tmp_path)

    snapshot = load_snapshot(tmp_path / "pulled")
    assert snapshot.manifest.owner_names == {"501": "Jane Doe", "502": "Sam (deactivated)", "601": "ae@example.com"}
    assert set(snapshot["companies"]["cs_owner_id"]) == {"501", "502"}

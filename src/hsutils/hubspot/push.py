"""Push health scores and the model's weights to HubSpot company properties, and roll a push back.

Everything is written inside one property group (`customer_health` by default) to properties whose names start
with the group's prefix; a property of that name in another group stops the push. Current values are read first
(batch read, 100 ids a request) and only differences are written (batch update, 100 a request), so a second
identical run changes nothing. The default is a dry run that prints what would change; `apply=True` writes,
keeping an audit file of (company, property, old value, new value, time) written ahead of every batch, which
`rollback` reads to restore the old values. A change to the weights property's definition (its formula and
description) is an audit row without a company, which `rollback` restores too (a property the push created is
left in place: rollback deletes no property). Items failed in a 207 answer are retried, the rest reported.

Companies HubSpot no longer has, and companies merged since the scores were made (HubSpot answers a merged id with
the surviving record under its own id, which lists the merged ids in `hs_merged_object_ids`), are counted and named
in the summary, in one warning line and in the audit (a row without a property, its `note` saying why). A merged
company's values go to the surviving record only when it is the one scored company merged into it and the
surviving record has no score of its own. A property refused part-way through creating the schema (the portal's
limit of custom properties) archives the properties and group this run created before the push stops. The audit
file is written from the first row on: a push that writes nothing leaves none.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import time
import unicodedata
import uuid
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hsutils.errors import InputError, counted, example_rows
from hsutils.files import read_yaml_mapping
from hsutils.hubspot.client import DEFAULT_HOST, Connection, HubSpotError, base_url
from hsutils.hubspot.config import PortalConfig, load_config
from hsutils.progress import progress_bar
from hsutils.snapshot import parse_utc
from hsutils.validate import SCIENTIFIC_ID_PATTERN

BATCH = 100
BANDS = ("Healthy", "Neutral", "At risk")
PERMANENT = {"OBJECT_NOT_FOUND", "VALIDATION_ERROR", "READ_ONLY_VALUE", "INVALID_PROPERTY"}
AUDIT_COLUMNS = ["company_id", "property", "old_value", "new_value", "changed_at", "model_version", "run_id", "host",
                 "note"]
AUDIT_REQUIRED = ("company_id", "property", "old_value", "new_value")
WEIGHTS_LABEL = "Health score (model weights)"
WEIGHTS_PROPERTY = "weighted_score"  # after the push prefix: the calculated property holding the model's weights
MERGED_IDS = "hs_merged_object_ids"  # HubSpot's list of the ids merged into a record (";"-separated)


@dataclass(frozen=True)
class PropertySpec:
    """A company property the push owns."""

    name: str
    label: str
    type: str  # number | string | enumeration | bool | datetime
    field_type: str
    description: str
    options: tuple[str, ...] = ()
    formula: str | None = None


@dataclass
class Change:
    company_id: str
    property: str
    old: str | None
    new: str
    note: str = ""  # why, where the audit should say more than the values (a merged company's score)


@dataclass
class PushReport:
    """What a push (or rollback) would do or did."""

    mode: str  # "dry run" | "applied"
    action: str  # "push" | "rollback"
    companies: int
    missing: list[str]
    changes: list[Change]
    written: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    conflicts: int = 0
    properties_created: list[str] = field(default_factory=list)  # in a dry run: those the push would create
    group_created: str = ""  # the property group created (in a dry run: that would be created)
    calculated: str = ""
    model_version: str = ""
    audit: Path | None = None
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    score_property: str = "customer_health_score"
    merged: dict[str, str] = field(default_factory=dict)  # input id -> the id HubSpot merged it into ('' unnamed)
    not_written: dict[str, str] = field(default_factory=dict)  # merged input id -> why its values are not written

    @property
    def changed_companies(self) -> int:
        return len({c.company_id for c in self.changes})

    @property
    def redirected(self) -> dict[str, str]:
        """{input id: the surviving id its values go to}: the merged companies whose values are written."""
        return {company_id: into for company_id, into in self.merged.items() if company_id not in self.not_written}

    def unwritable(self) -> str:
        """One line counting and naming (3 at most) the input companies whose values cannot be written because
        HubSpot no longer has them or merged them where they cannot go; '' when there are none."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing):,} no longer in HubSpot (e.g. {', '.join(self.missing[:3])})")
        if self.not_written:
            examples = "; ".join(f"{i} {why}" for i, why in list(self.not_written.items())[:3])
            parts.append(f"{len(self.not_written):,} merged in HubSpot into a company that cannot take their values "
                         f"(e.g. {examples})")
        if not parts:
            return ""
        return (f"{len(self.missing) + len(self.not_written):,} of the {counted(self.companies, 'company')} in the input "
                f"{'cannot' if self.mode == 'dry run' else 'could not'} be written: " + "; ".join(parts)
                + (" (score from a fresh pull to include the merged companies)" if self.not_written else ""))

    def biggest_moves(self, limit: int = 10) -> list[tuple[str, float | None, float]]:
        moves = []
        for c in self.changes:
            if c.property == self.score_property:
                new = _float(c.new)
                old = _float(c.old)
                if new is not None:
                    moves.append((c.company_id, old, new))
        moves.sort(key=lambda m: -abs(m[2] - (m[1] if m[1] is not None else m[2])) if m[1] is not None else 0)
        return moves[:limit]

    def summary(self) -> str:
        verb = "would change" if self.mode == "dry run" else "changed"
        lines = [f"hsutils {self.action} ({self.mode}, model {self.model_version}): "
                 f"{counted(self.companies, 'company')} in the input, {self.changed_companies:,} {verb} "
                 f"({counted(len(self.changes), 'property value')})"]
        if self.missing:
            lines.append(f"  not found in the portal: {len(self.missing):,} (e.g. {', '.join(self.missing[:3])})")
        if self.merged:
            examples = ", ".join(f"{i} into {into or 'a company HubSpot did not name'}"
                                 for i, into in list(self.merged.items())[:3])
            moved = f"{len(self.redirected):,} {'would go' if self.mode == 'dry run' else 'went'} to the company " \
                    f"they merged into, {len(self.not_written):,} not written"
            lines.append(f"  merged in HubSpot since the scores were made: {len(self.merged):,} (e.g. {examples}); "
                         + moved)
        created = ([f"property group {self.group_created}"] if self.group_created else []) + (
            [f"{counted(len(self.properties_created), 'company property')} ({', '.join(self.properties_created)})"]
            if self.properties_created else [])
        if created:
            lines.append(f"  {'would create' if self.mode == 'dry run' else 'created'}: {'; '.join(created)}")
        if self.calculated:
            lines.append(f"  weights: {self.calculated}")
        if self.conflicts:
            lines.append(f"  skipped {counted(self.conflicts, 'value')} changed in HubSpot since the push")
        moves = [m for m in self.biggest_moves() if m[1] is not None]
        if moves:
            lines.append("  biggest score moves: " + "; ".join(f"{cid} {old:.1f} -> {new:.1f}" for cid, old, new in moves))
        new_scores = sum(1 for c in self.changes if c.property == self.score_property and not c.old)
        if new_scores:
            lines.append(f"  first score for {counted(new_scores, 'company')}")
        bands = Counter(c.new for c in self.changes if c.property.endswith("band") and c.new)
        if bands:
            lines.append("  new bands: " + ", ".join(f"{b} {n:,}" for b, n in sorted(bands.items())))
        if self.mode != "dry run":
            lines.append(f"  written {counted(self.written, 'company')}; failed {len(self.failed):,}"
                         + (f" (e.g. {next(iter(self.failed.items()))})" if self.failed else ""))
            lines.append(f"  audit: {self.audit}" if self.audit and self.audit.exists()
                         else "  no audit file: nothing was written")
        lines.append(f"  {counted(self.requests, 'request')} ({counted(self.retries, 'retry')}) in {self.seconds:.1f} s")
        if self.mode == "dry run" and (self.changes or created):
            lines.append("  nothing was written: run again with --apply to write these values")
        return "\n".join(lines)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _num(value: Any, digits: int) -> str:
    number = _float(value)
    if number is None:
        return ""
    number = round(number, digits)
    return str(int(number)) if number.is_integer() else repr(number)


def _same(current: str | None, new: str, spec: PropertySpec) -> bool:
    current = current or ""
    if current == new:
        return True
    if spec.type == "number":
        a, b = _float(current), _float(new)
        return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if spec.type == "datetime":
        try:
            return parse_utc(current) == parse_utc(new)
        except ValueError:
            return False
    if spec.type == "bool":
        return current.lower() == new.lower()
    return False


# ----- inputs --------------------------------------------------------------------------------------------------
def safe_name(text: str) -> str:
    """`text` as lowercase letters, digits and single underscores (accents dropped: 'Ärger-Quote' -> 'arger_quote');
    '' when nothing of it is left."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", ascii_text.lower())).strip("_")


def points_property(prefix: str, signal: str) -> str:
    """The company property holding a signal's points: `<prefix>points_<signal as a safe name>`."""
    return f"{prefix}points_{safe_name(signal)}"


def read_model(path: str | Path) -> dict[str, Any]:
    """The model file: at least `version` and `signals: [{name, points}]`."""
    path = Path(path)
    model = read_yaml_mapping(path, "model file")
    if not model.get("version") or not isinstance(model.get("signals"), list):
        raise InputError(f"model file {path}: needs `version` and a `signals` list of {{name, points}}")
    names: set[str] = set()
    for signal in model["signals"]:
        points = _float(signal.get("points")) if isinstance(signal, dict) else None
        if points is None or not isinstance(signal.get("name"), str) or not signal["name"]:
            raise InputError(f"model file {path}: every signal needs a name and numeric points, got {signal!r:.120}")
        if not (math.isfinite(points) and points >= 0):
            raise InputError(f"model file {path}: signal {signal['name']!r}: points is {points!r}; it must be a "
                             "finite number >= 0")
        if signal["name"] in names:
            raise InputError(f"model file {path}: signal {signal['name']!r} is listed twice")
        names.add(signal["name"])
    return model


def company_ids(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """`frame` with company_id as text the way HubSpot spells record ids: a whole number as its digits ('123.0',
    ' 00123' -> '123'), other ids trimmed, '' as empty. InputError for ids that are numbers but not whole, or that a
    spreadsheet wrote in scientific notation (1.23457E+10: the digits are lost)."""
    if frame.schema["company_id"].is_float():
        value = pl.col("company_id")
        bad = frame.filter(value.is_not_null() & (value.is_nan() | value.is_infinite() | (value % 1 != 0)
                                                  | (value.abs() >= 2.0 ** 53)))
        if bad.height:
            raise InputError(f"scores file {path}, column company_id: {counted(bad.height, 'id')} "
                             f"{'is not a whole number' if bad.height == 1 else 'are not whole numbers'}, e.g. "
                             f"{bad.get_column('company_id').head(3).to_list()}: HubSpot record ids are")
        return frame.with_columns(value.cast(pl.Int64).cast(pl.String))
    text = pl.col("company_id").cast(pl.String).str.strip_chars()
    frame = frame.with_columns(pl.when(text != "").then(text).alias("company_id"))
    scientific = frame.filter(pl.col("company_id").str.contains(SCIENTIFIC_ID_PATTERN))
    if scientific.height:
        raise InputError(f"scores file {path}, column company_id: {counted(scientific.height, 'id')} in scientific "
                         f"notation, e.g. {scientific.get_column('company_id').head(3).to_list()}: a spreadsheet shortened "
                         "them and their digits are lost; export the ids as text")
    whole = pl.col("company_id").str.contains(r"^[0-9]+(\.0*)?$")
    return frame.with_columns(pl.when(whole).then(pl.col("company_id").str.replace(r"\.0*$", "")
                                                  .str.replace(r"^0+([0-9])", "${1}"))
                              .otherwise(pl.col("company_id")).alias("company_id"))


def read_scores(path: str | Path) -> pl.DataFrame:
    """The scores file (parquet or CSV): the latest row per company. InputError for a company with two rows of
    different values at its latest date (which to write is not ours to pick)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores file {path} does not exist")
    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(
            path, infer_schema_length=10000, schema_overrides={"company_id": pl.String})
    except Exception as exc:  # polars raises many types for unreadable files
        raise InputError(f"scores file {path} cannot be read ({type(exc).__name__})") from None
    missing = [c for c in ("company_id", "as_of", "health_score", "band", "churn_probability") if c not in frame.columns]
    if missing:
        raise InputError(f"scores file {path}: column(s) missing: {', '.join(missing)}")
    frame = company_ids(frame, path)
    if frame.schema["as_of"] == pl.String:
        frame = frame.with_columns(pl.col("as_of").str.to_datetime(time_zone="UTC", strict=False))
    elif frame.schema["as_of"] == pl.Date or frame.schema["as_of"].time_zone is None:
        frame = frame.with_columns(pl.col("as_of").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
    numbers = ["health_score", "churn_probability", *(c for c in ("score_change_30d",) if c in frame.columns),
               *(c for c in frame.columns if c.startswith("points_"))]
    not_numeric = [c for c in numbers if not frame.schema[c].is_numeric() and frame.get_column(c).drop_nulls().len()]
    if not_numeric:
        raise InputError(f"scores file {path}: column(s) {', '.join(not_numeric)} must hold numbers")
    frame = frame.with_columns(pl.col(numbers).cast(pl.Float64))
    bad = frame.filter(pl.col("company_id").is_null() | pl.col("as_of").is_null() | pl.col("health_score").is_null()
                       | pl.col("health_score").is_nan())
    if bad.height:
        raise InputError(f"scores file {path}: {counted(bad.height, 'row')} without company_id, as_of or health_score (empty "
                         f"or NaN), e.g. {example_rows(bad.select('company_id', 'as_of', 'health_score'))}")
    ranges = {"health_score": (0.0, 100.0), "churn_probability": (0.0, 1.0)}
    for column in numbers:
        low, high = ranges.get(column, (-math.inf, math.inf))
        value = pl.col(column)
        bad = frame.filter(value.is_infinite() | (value < low) | (value > high))
        if bad.height:
            raise InputError(f"scores file {path}, column {column}: {counted(bad.height, 'value')} "
                             + ("infinite" if math.isinf(low) else f"outside {low:g}..{high:g} or infinite")
                             + f", e.g. {example_rows(bad.select('company_id', column))}")
    bad = frame.filter(~pl.col("band").is_in(BANDS))
    if bad.height:
        raise InputError(f"scores file {path}, column band: value(s) outside {'/'.join(BANDS)}, e.g. "
                         f"{bad.get_column('band').head(3).to_list()}")
    written = [c for c in frame.columns if c in ("health_score", "band", "churn_probability", "score_change_30d",
                                                 "expansion_candidate", "model_version") or c.startswith("points_")]
    latest = frame.filter(pl.col("as_of") == pl.col("as_of").max().over("company_id"))
    clash = latest.select("company_id", *written).unique().filter(pl.len().over("company_id") > 1)
    if clash.height:
        ids = sorted(set(clash.get_column("company_id").to_list()))
        raise InputError(f"scores file {path}: {counted(len(ids), 'company')} "
                         f"{'has' if len(ids) == 1 else 'have'} rows with different values for their "
                         f"latest as_of, e.g. {', '.join(ids[:3])}: keep one row per company and date")
    return frame.sort("as_of").unique("company_id", keep="last").sort("company_id")


def plan_properties(model: dict[str, Any], scores: pl.DataFrame, prefix: str) -> list[PropertySpec]:
    """The company properties of the group, named `<prefix>...`."""
    specs = [
        PropertySpec(f"{prefix}score", "Health score", "number", "number", "Customer health score, 0-100 (higher "
                     "is healthier), from hsutils."),
        PropertySpec(f"{prefix}band", "Health band", "enumeration", "select", "Healthy / Neutral / At risk.",
                     options=BANDS),
        PropertySpec(f"{prefix}churn_probability", "Churn probability", "number", "number",
                     "Calibrated probability of churn at the next renewal."),
        PropertySpec(f"{prefix}score_change_30d", "Health score change (30 days)", "number", "number",
                     "Score minus the score four weeks earlier."),
        PropertySpec(f"{prefix}expansion_candidate", "Expansion candidate", "bool", "booleancheckbox",
                     "Healthy and using most of its seats.", options=("true", "false")),
        PropertySpec(f"{prefix}model_version", "Health model version", "string", "text",
                     "Version of the health model that produced the score."),
        PropertySpec(f"{prefix}scored_at", "Health scored at", "datetime", "date", "When the score was computed."),
    ]
    signals = [s["name"] for s in model["signals"] if (_float(s.get("points")) or 0) > 0]
    signals += [c[len("points_"):] for c in scores.columns if c.startswith("points_") and c[len("points_"):] not in signals]
    owner: dict[str, str] = {}  # property name -> the signal it holds the points of
    for signal in signals:
        short, name = safe_name(signal), points_property(prefix, signal)
        if not short:
            raise InputError(f"signal {signal!r} has no HubSpot-safe property name (lowercase letters, digits, "
                             "underscores): rename the signal")
        if owner.setdefault(name, signal) != signal:
            raise InputError(f"signals {owner[name]!r} and {signal!r} would both write company property {name}: "
                             "rename one of them")
        specs.append(PropertySpec(name, f"Health points: {short.replace('_', ' ')}", "number", "number",
                                  f"Points the {short} component adds to the health score."))
    for spec in specs:
        if len(spec.name) > 100 or not re.match(r"^[a-z][a-z0-9_]*$", spec.name):
            raise InputError(f"property name {spec.name!r} is not valid in HubSpot (lowercase letters, digits, "
                             "underscores, starting with a letter, at most 100 characters); shorten the signal "
                             "name or push.prefix")
    return specs


def property_definition(formula: str | None, description: str | None) -> str:
    """The weights property's definition as audit text: JSON of its formula and description."""
    return json.dumps({"calculation_formula": formula or "", "description": description or ""}, sort_keys=True)


def portal_definition(prop: Any) -> str:
    """The audit text of a portal property's definition; '' when the portal has no such property."""
    return "" if prop is None else property_definition(prop.calculation_formula, prop.description)


def weights_formula(model: dict[str, Any], prefix: str) -> str | None:
    """The chosen weights as a calculation formula: each component counts up to its points."""
    parts = [f"min({points_property(prefix, s['name'])}, {float(s['points']):g})"
             for s in model["signals"] if (_float(s.get("points")) or 0) > 0]
    return " + ".join(parts) if parts else None


def desired_values(scores: pl.DataFrame, specs: list[PropertySpec], prefix: str,
                   model_version: str) -> dict[str, dict[str, str]]:
    """{company id: {property: value text}} for the properties the scores file has."""
    names = {s.name for s in specs}
    out: dict[str, dict[str, str]] = {}
    for row in scores.iter_rows(named=True):
        values = {
            f"{prefix}score": _num(row["health_score"], 2),
            f"{prefix}band": str(row["band"]),
            f"{prefix}churn_probability": _num(row["churn_probability"], 4),
            f"{prefix}model_version": str(row.get("model_version") or model_version),
            f"{prefix}scored_at": row["as_of"].astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if "score_change_30d" in row:
            values[f"{prefix}score_change_30d"] = _num(row["score_change_30d"], 2)
        if "expansion_candidate" in row and row["expansion_candidate"] is not None:
            values[f"{prefix}expansion_candidate"] = "true" if row["expansion_candidate"] else "false"
        for column, value in row.items():
            if column.startswith("points_") and points_property(prefix, column[len("points_"):]) in names:
                values[points_property(prefix, column[len("points_"):])] = _num(value, 2)
        out[str(row["company_id"])] = values
    return out


# ----- HubSpot side ------------------------------------------------------------------------------------------------
class CompanyWriter:
    """Batch reads and writes of company properties with 207 handling, limited to one property group."""

    def __init__(self, conn: Connection, group: str, allowed: set[str], progress: bool = False,
                 partial_retries: int = 3) -> None:
        self.conn = conn
        self.group = group
        self.allowed = allowed
        self.progress = progress
        self.partial_retries = partial_retries
        self.batch_api = conn.api("crm.companies.batch_api")
        self.written = 0  # companies written by the current `write`, also when it stops with an error

    def read(self, ids: list[str], properties: list[str]
             ) -> tuple[dict[str, dict[str, str | None]], list[str], dict[str, str]]:
        """Current values of `properties` by record id; the ids HubSpot does not know; and {id: the id of the record
        it was merged into} for ids HubSpot answers with another record ('' when that record does not list it in
        hs_merged_object_ids). A merged id's surviving record is among the current values under its own id."""
        from hubspot.crm.companies import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        current: dict[str, dict[str, str | None]] = {}
        missing: list[str] = []
        merged: dict[str, str] = {}
        pending = list(ids)
        for _round in range(self.partial_retries + 1):
            retry: list[str] = []
            with progress_bar(total=len(pending), desc="read companies", unit="co", show=self.progress) as bar:
                for start in range(0, len(pending), BATCH):
                    chunk = pending[start:start + BATCH]
                    body = BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in chunk],
                                                              properties=[*properties, MERGED_IDS],
                                                              properties_with_history=[])
                    answer = self.conn.call_json("read company properties", self.batch_api.read,
                                                 batch_read_input_simple_public_object_id=body)
                    asked = set(chunk)
                    for rec in answer.get("results") or []:
                        record_id, values = str(rec["id"]), dict(rec.get("properties") or {})
                        current[record_id] = values
                        for old in str(values.get(MERGED_IDS) or "").split(";"):  # ids it answers for
                            if old.strip() in asked and old.strip() != record_id:
                                merged[old.strip()] = record_id
                    failed: set[str] = set()
                    for err in answer.get("errors") or []:
                        ids_ = [str(i) for i in (err.get("context") or {}).get("ids", [])]
                        (missing if err.get("category") in PERMANENT else retry).extend(ids_)
                        failed.update(ids_)
                    merged.update({i: "" for i in chunk  # answered by a record that does not name it
                                   if i not in current and i not in merged and i not in failed})
                    bar.update(len(chunk))
            pending = retry
            if not pending:
                break
        if pending:
            raise HubSpotError(f"read company properties: {counted(len(pending), 'company')} kept failing, e.g. "
                               f"{', '.join(pending[:3])}")
        return current, missing, merged

    def write(self, updates: dict[str, dict[str, str]], before_batch: Any = None) -> tuple[int, dict[str, str]]:
        """Write `updates` ({id: {property: value}}) 100 a request; retry 207 failures; return (written, failed)."""
        from hubspot.crm.companies import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput

        for values in updates.values():
            outside = set(values) - self.allowed
            if outside:
                raise HubSpotError(f"refusing to write {', '.join(sorted(outside))}: outside the {self.group} group")
        self.written, failed = 0, {}
        pending = list(updates)
        with progress_bar(total=len(pending), desc="write companies", unit="co", show=self.progress) as bar:
            for round_ in range(self.partial_retries + 1):
                retry: list[str] = []
                for start in range(0, len(pending), BATCH):
                    chunk = pending[start:start + BATCH]
                    if before_batch is not None:
                        before_batch(chunk)
                    body = BatchInputSimplePublicObjectBatchInput(
                        inputs=[SimplePublicObjectBatchInput(id=i, properties=updates[i]) for i in chunk])
                    answer = self.conn.call_json("update company properties", self.batch_api.update,
                                                 batch_input_simple_public_object_batch_input=body)
                    done = {str(r["id"]) for r in answer.get("results") or []}
                    self.written += len(done)
                    bar.update(len(done))
                    for err in answer.get("errors") or []:
                        category = err.get("category")
                        for object_id in (err.get("context") or {}).get("ids", []):
                            object_id = str(object_id)
                            if category in PERMANENT or round_ == self.partial_retries:
                                failed[object_id] = f"{category}: {err.get('message')}"
                            else:
                                retry.append(object_id)
                pending = [i for i in retry if i not in failed]
                if not pending:
                    break
        return self.written, failed

    def ensure_schema(self, specs: list[PropertySpec], existing: dict[str, Any], group_label: str,
                      groups: set[str]) -> tuple[str, list[str]]:
        """Create the group and missing properties; returns (the group's name if created here, else ''; the names
        of the properties created)."""
        from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate

        core = self.conn.api("crm.properties.core_api")
        group_created = ""
        if self.group not in groups:
            try:
                self.conn.call("create property group", self.conn.api("crm.properties.groups_api").create,
                               "companies", PropertyGroupCreate(name=self.group, label=group_label))
                group_created = self.group
            except HubSpotError as exc:
                if exc.status != 409:
                    raise
        created: list[str] = []
        for spec in specs:
            if spec.name in existing:
                continue
            options = [OptionInput(label=o if spec.type != "bool" else ("Yes" if o == "true" else "No"), value=o,
                                   display_order=i, hidden=False) for i, o in enumerate(spec.options)]
            body = PropertyCreate(name=spec.name, label=spec.label, type=spec.type, field_type=spec.field_type,
                                  group_name=self.group, description=spec.description, options=options or None)
            try:
                self.conn.call(f"create property {spec.name}", core.create, "companies", body)
                created.append(spec.name)
            except HubSpotError as exc:
                if exc.status != 409:
                    raise HubSpotError(f"{str(exc).rstrip('.')}; {self.undo_schema(created, group_created)}", exc.status,
                                       exc.category) from None
        return group_created, created

    def undo_schema(self, created: list[str], group_created: str) -> str:
        """Archive the properties (newest first) and the group this run created; says what is left behind."""
        def archived(what: str, api: str, name: str) -> bool:
            try:
                self.conn.call(f"archive {what}", self.conn.api(api).archive, "companies", name)
            except HubSpotError:
                return False
            return True

        left = [name for name in reversed(created) if not archived(f"property {name}", "crm.properties.core_api", name)]
        if group_created and (left or not archived("property group", "crm.properties.groups_api", group_created)):
            left.append(f"property group {group_created}")  # a group still holding properties is left too
        if not created and not group_created:
            return "nothing was created, nothing is left behind"
        made = [f"the {counted(len(created), 'property')}"] if created else []
        made += [f"the group {group_created}"] if group_created else []
        one = len(made) == 1 and len(created) <= 1  # one property, or the group alone
        if not left:
            return (f"{' and '.join(made)} this run created {'was' if one else 'were'} archived again: nothing is "
                    "left behind")
        return (f"archiving what this run created failed for {', '.join(left)}: archive "
                f"{'it' if len(left) == 1 else 'them'} in HubSpot (Settings > Properties) or leave "
                f"{'it' if len(left) == 1 else 'them'} for the next push")


def read_only(prop: Any) -> bool:
    """Whether HubSpot refuses writes to a property's values (a calculated or otherwise read-only property)."""
    metadata = getattr(prop, "modification_metadata", None)
    return bool(getattr(prop, "calculated", False) or prop.field_type == "calculation_equation"
                or getattr(metadata, "read_only_value", False))


def check_existing_properties(specs: list[PropertySpec], existing: dict[str, Any], group: str) -> None:
    """Stop before anything is written when a property the push would write exists in another group, with another
    type, read-only (calculated), without the options the push writes, or made by someone else (neither the label
    nor the description hsutils gives it: its values are not the suite's to overwrite)."""
    fix = "choose another push.prefix in the portal config"
    for spec in specs:
        prop = existing.get(spec.name)
        if prop is None:
            continue
        if prop.group_name != group:
            raise InputError(f"company property {spec.name} already exists in group {prop.group_name}, not "
                             f"{group}: hsutils writes only its own group ({fix})")
        if prop.type != spec.type:
            raise InputError(f"company property {spec.name} exists with type {prop.type}, hsutils needs "
                             f"{spec.type}: archive it in HubSpot or {fix}")
        if read_only(prop):
            raise InputError(f"company property {spec.name} is a calculated (read-only) property in HubSpot, so "
                             f"its values cannot be written: archive it in HubSpot or {fix}")
        if spec.type == "enumeration":
            lacking = [o for o in spec.options if o not in {option.value for option in prop.options or []}]
            if lacking:
                raise InputError(f"company property {spec.name} lacks the option(s) {', '.join(lacking)} hsutils "
                                 f"writes: add them in HubSpot or {fix}")
        if prop.label != spec.label and (prop.description or "") != spec.description:
            raise InputError(f"company property {spec.name} (label {prop.label!r}) was not made by hsutils: a push "
                             f"would overwrite its values; {fix}, or archive it in HubSpot")


def read_audit(path: Path, host: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of an audit file written for the portal at `host` (an API base URL); InputError for a
    file that is not a complete audit (unreadable, a column missing, a damaged row) or that another host's push
    wrote. Audits written before the host was recorded are taken as they are."""
    if not path.is_file():
        raise InputError(f"audit file {path} does not exist")
    if path.stat().st_size == 0:
        return [], []  # an audit created with nothing in it (older versions wrote the header first): nothing to undo
    extra = "\0extra"  # where DictReader puts the fields of a row longer than the header
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, restkey=extra)
            header = list(reader.fieldnames or [])
            missing = [c for c in AUDIT_REQUIRED if c not in header]
            if missing:
                raise InputError(f"audit file {path}: column(s) missing: {', '.join(missing)} (not an hsutils push "
                                 "audit)")
            rows = []
            for row in reader:
                if None in row.values() or extra in row:
                    fields = sum(v is not None for k, v in row.items() if k != extra) + len(row.get(extra) or [])
                    raise InputError(f"audit file {path}, line {reader.line_num}: {fields} fields, not "
                                     f"{len(header)}: the file is damaged (cut short or edited)")
                rows.append(row)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"audit file {path} is not a readable CSV audit ({type(exc).__name__})") from None
    hosts = sorted({row.get("host") or "" for row in rows} - {""})
    if hosts and hosts != [host]:
        raise InputError(f"audit file {path} was written for the portal at {', '.join(hosts)}, not {host}: run it "
                         "against that host (--host)")
    return header, rows


class Audit:
    """The audit file: rows written before each batch is sent, never repeated for the same change, the file made
    with the first row (a run that records nothing leaves none). An existing file (a resumed run) is continued in
    its own columns, and only for the same host."""

    def __init__(self, path: Path, run_id: str, model_version: str, host: str) -> None:
        self.path = path
        self.run_id = run_id
        self.model_version = model_version
        self.host = host
        self.seen: set[tuple[str, str, str]] = set()
        self.columns = AUDIT_COLUMNS
        if path.exists():
            header, rows = read_audit(path, host)
            self.columns = header or AUDIT_COLUMNS
            self.seen = {(row["company_id"], row["property"], row["new_value"]) for row in rows}

    def record(self, changes: list[Change]) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        rows = []
        for c in changes:
            key = (c.company_id, c.property, c.new)
            if key not in self.seen:
                self.seen.add(key)
                rows.append({"company_id": c.company_id, "property": c.property, "old_value": c.old or "",
                             "new_value": c.new, "changed_at": stamp, "model_version": self.model_version,
                             "run_id": self.run_id, "host": self.host, "note": c.note})
        if rows:
            new_file = not self.path.exists() or self.path.stat().st_size == 0
            if new_file:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
                if new_file:
                    writer.writeheader()
                writer.writerows(rows)
                handle.flush()
                os.fsync(handle.fileno())


def _property_index(conn: Connection) -> tuple[dict[str, Any], set[str]]:
    props = conn.call("read company properties", conn.api("crm.properties.core_api").get_all, "companies",
                      archived=False)
    groups = conn.call("read company property groups", conn.api("crm.properties.groups_api").get_all, "companies")
    return {p.name: p for p in props.results or []}, {g.name for g in groups.results or []}


def _diff(desired: dict[str, dict[str, str]], current: dict[str, dict[str, str | None]],
          specs: dict[str, PropertySpec], notes: dict[str, str] | None = None) -> list[Change]:
    changes = []
    for company_id, values in desired.items():
        if company_id not in current:
            continue
        now = current[company_id]
        for name, new in values.items():
            if not _same(now.get(name), new, specs[name]):
                changes.append(Change(company_id, name, now.get(name), new, (notes or {}).get(company_id, "")))
    return changes


def follow_merges(desired: dict[str, dict[str, str]], merged: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """({input id: surviving id} whose values go to the surviving record, {input id: why not}) for input companies
    HubSpot merged into another record. Values follow a merge only when exactly one input company was merged into
    the surviving record and that record has no values of its own in the input: otherwise which score it should
    hold is not ours to pick."""
    into: dict[str, list[str]] = defaultdict(list)
    for old, survivor in merged.items():
        into[survivor].append(old)
    follow, refused = {}, {}
    for survivor, olds in into.items():
        for old in olds:
            if not survivor:
                refused[old] = "merged into a company HubSpot did not name"
            elif survivor in desired:
                refused[old] = f"merged into {survivor}, which has a score of its own"
            elif len(olds) > 1:
                others = [o for o in olds if o != old]
                refused[old] = f"merged into {survivor} together with {', '.join(others[:2])}"
            else:
                follow[old] = survivor
    return follow, refused


def push(model: str | Path, scores: str | Path, host: str = DEFAULT_HOST, token: str | None = None,
         apply: bool = False, config: PortalConfig | str | Path | None = None, audit: str | Path | None = None,
         rate: str | int | None = "pro", retries: int = 8, backoff: float = 0.5, progress: bool = False,
         before_batch: Any = None) -> PushReport:
    """Dry-run (default) or apply a push of `scores` and the weights of `model` to the portal at `host`."""
    started = time.perf_counter()
    if not isinstance(config, PortalConfig):
        config = load_config(config)
    model_data = read_model(model)
    frame = read_scores(scores)
    version = str(model_data["version"])
    if "model_version" in frame.columns:
        versions = set(frame.get_column("model_version").drop_nulls().cast(pl.String).unique().to_list())
        if versions and versions != {version}:
            raise InputError(f"scores file {scores} was made with model version(s) {', '.join(sorted(versions))}, "
                             f"the model file is version {version}: score with this model first")
    group, prefix = config.push["group"], config.push["prefix"]
    specs = plan_properties(model_data, frame, prefix)
    formula = weights_formula(model_data, prefix) if config.push.get("calculated_property", True) else None
    calc_spec = PropertySpec(f"{prefix}{WEIGHTS_PROPERTY}", WEIGHTS_LABEL, "number",
                             "calculation_equation", f"Weights of health model {version}: " + ", ".join(
                                 f"{s['name']} {float(s['points']):g}" for s in model_data["signals"]
                                 if (_float(s.get("points")) or 0) > 0), formula=formula)
    spec_by_name = {s.name: s for s in specs}
    desired = desired_values(frame, specs, prefix, version)

    conn = Connection(host=host, token=token, rate=rate, retries=retries, backoff=backoff)
    existing, groups = _property_index(conn)
    check_existing_properties(specs, existing, group)
    writer = CompanyWriter(conn, group, set(spec_by_name), progress=progress)
    readable = [s.name for s in specs if s.name in existing]
    current, missing, merged = writer.read(list(desired), readable)
    follow, refused = follow_merges(desired, merged)
    targets = {company_id: company_id for company_id in desired if company_id not in merged} | follow
    notes = {survivor: f"values of company {old}, which HubSpot merged into {survivor}" for old, survivor in follow.items()}
    changes = _diff({target: desired[company_id] for company_id, target in targets.items()}, current, spec_by_name,
                    notes)
    report = PushReport(mode="applied" if apply else "dry run", action="push", companies=len(desired),
                        missing=sorted(missing), changes=changes, model_version=version,
                        score_property=f"{prefix}score", group_created="" if group in groups else group,
                        properties_created=[s.name for s in specs if s.name not in existing],
                        merged=merged, not_written=refused)
    if unwritable := report.unwritable():
        warnings.warn(unwritable, UserWarning, stacklevel=1)
    calc_existing = existing.get(calc_spec.name)
    if formula is None:
        report.calculated = "no calculated property (disabled in the portal config or no positive points)"
    elif calc_existing is not None and calc_existing.group_name != group:
        raise InputError(f"company property {calc_spec.name} already exists in group {calc_existing.group_name}")
    elif calc_existing is not None and calc_existing.field_type != "calculation_equation":
        formula = None  # someone's own property of that name: the weights are not written into it
        report.calculated = (f"{calc_spec.name} exists and is not a calculated property: left as it is; model "
                             f"version {version} is recorded on every company instead")
    elif calc_existing is not None and (calc_existing.calculation_formula or "") == formula:
        report.calculated = f"{calc_spec.name} already holds the weights of this model"
    else:
        report.calculated = f"{calc_spec.name} {'would be' if not apply else 'is'} set to {formula}"
    if apply:
        default_name = f"hubspot-push-audit-{safe_name(version)}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.csv"
        report.audit = Path(audit) if audit else Path.cwd() / default_name
        log = Audit(report.audit, uuid.uuid4().hex[:12], version, conn.host)
        try:
            report.group_created, report.properties_created = writer.ensure_schema(
                specs, existing, config.push.get("group_label", group), groups)
        except HubSpotError as exc:
            raise HubSpotError(f"push stopped before writing any company value: {exc}", exc.status,
                               exc.category) from None
        log.record([Change(company_id, "", "", "", "not written: " + ("no longer in HubSpot (deleted or never there)"
                                                                      if company_id in missing else refused[company_id]))
                    for company_id in [*report.missing, *refused]])
        if formula is not None and not report.calculated.endswith("this model"):
            log.record([Change("", calc_spec.name, portal_definition(calc_existing),
                               property_definition(calc_spec.formula, calc_spec.description))])
            report.calculated = _write_calculated(conn, calc_spec, calc_existing, group, version)
        updates: dict[str, dict[str, str]] = {}
        by_company: dict[str, list[Change]] = {}
        for change in changes:
            updates.setdefault(change.company_id, {})[change.property] = change.new
            by_company.setdefault(change.company_id, []).append(change)

        def ahead(chunk: list[str]) -> None:
            log.record([c for i in chunk for c in by_company[i]])
            if before_batch is not None:
                before_batch(chunk)

        report.written, report.failed = _write_or_explain(writer, updates, ahead, "push", report.audit)
    report.requests = conn.stats.requests
    report.retries = sum(conn.stats.retries.values())
    report.seconds = time.perf_counter() - started
    return report


def _write_or_explain(writer: CompanyWriter, updates: dict[str, dict[str, str]], before_batch: Any, action: str,
                      audit: Path, rerun: str = "") -> tuple[int, dict[str, str]]:
    """`writer.write(updates)`; a HubSpot error that stops it part-way becomes one line saying how many companies
    were written, where the audit of them is and how to finish or undo the run."""
    try:
        return writer.write(updates, before_batch=before_batch)
    except HubSpotError as exc:
        rerun = rerun or f"the same command with --audit {audit}"
        raise HubSpotError(f"{action} stopped part-way: {writer.written:,} of {counted(len(updates), 'company')} written "
                           f"(audit: {audit}); run {rerun} to finish"
                           + (f", or hsutils rollback {audit} --apply to undo" if action == "push" else "")
                           + f". Cause: {exc}", exc.status, exc.category) from None


def _write_calculated(conn: Connection, spec: PropertySpec, existing: Any, group: str, version: str) -> str:
    """Create or update the calculated weights property; a refusal is reported, never fatal."""
    from hubspot.crm.properties import PropertyCreate, PropertyUpdate

    core = conn.api("crm.properties.core_api")
    try:
        if existing is None:
            conn.call(f"create property {spec.name}", core.create, "companies", PropertyCreate(
                name=spec.name, label=spec.label, type="number", field_type="calculation_equation",
                group_name=group, description=spec.description, calculation_formula=spec.formula))
        else:
            conn.call(f"update property {spec.name}", core.update, "companies", spec.name, PropertyUpdate(
                description=spec.description, calculation_formula=spec.formula))
    except HubSpotError as exc:
        if exc.status in (400, 403, 409):
            return (f"the portal refused the calculated property ({str(exc).split(': ', 1)[-1][:160]}); "
                    f"model version {version} is recorded on every company instead")
        raise
    return f"{spec.name} = {spec.formula}"


# ----- rollback ------------------------------------------------------------------------------------------------------
def _plan_weights_rollback(definitions: list[dict[str, str]], name: str, current: Any,
                           apply: bool) -> tuple[str | None, str]:
    """(the definition to restore, or None to leave the property as it is; the summary's weights line) for the
    weights property `name` from the audit's definition rows (`current`: the portal's property or None). A
    property the push created is left in place: rollback deletes no property (views and reports may use it)."""
    rows = [row for row in definitions if row["property"] == name]
    if not rows:
        if current is None:
            return None, ""
        return None, f"{name} left as it is: the audit records no earlier definition of it (older audits did not)"
    before, pushed, now = rows[0]["old_value"], rows[-1]["new_value"], portal_definition(current)
    if now == before:
        return None, f"{name} is as it was before the push"
    if now != pushed:
        return None, f"{name} was changed in HubSpot since the push: left as it is"
    if not before:
        return None, f"{name} left in place: the push created it, and rollback deletes no property (archive it in " \
                     "HubSpot if it is not wanted)"
    return before, f"{name} {'is' if apply else 'would be'} restored to {json.loads(before)['calculation_formula']}"


def _restore_weights(conn: Connection, name: str, definition: str, current: Any, group: str, version: str) -> str:
    """Set the weights property's recorded formula and description back."""
    recorded = json.loads(definition)
    spec = PropertySpec(name, WEIGHTS_LABEL, "number", "calculation_equation", recorded["description"],
                        formula=recorded["calculation_formula"])
    outcome = _write_calculated(conn, spec, current, group, version)
    return f"{name} is restored to {spec.formula}" if outcome == f"{name} = {spec.formula}" else outcome


def rollback(audit: str | Path, host: str = DEFAULT_HOST, token: str | None = None, apply: bool = False,
             config: PortalConfig | str | Path | None = None, rate: str | int | None = "pro", retries: int = 8,
             backoff: float = 0.5) -> PushReport:
    """Restore the old values recorded in a push audit file where HubSpot still holds the pushed value, and the
    weights property's earlier definition where the audit records it and the portal still holds the pushed one."""
    started = time.perf_counter()
    if not isinstance(config, PortalConfig):
        config = load_config(config)
    audit = Path(audit)
    _header, rows = read_audit(audit, base_url(host))
    rows = [row for row in rows if row["property"]]  # rows without a property record companies not written
    group, prefix = config.push["group"], config.push["prefix"]
    definitions = [row for row in rows if not row["company_id"]]  # a property's definition, not a company's value
    first: dict[tuple[str, str], dict[str, str]] = {}
    last_new: dict[tuple[str, str], str] = {}
    for row in rows:
        if not row["company_id"]:
            continue
        key = (row["company_id"], row["property"])
        first.setdefault(key, row)
        last_new[key] = row["new_value"]
    audited = {row["property"] for row in rows}
    outside = sorted({p for p in audited if not p.startswith(prefix)})
    if outside:
        raise InputError(f"audit file {audit}: propert(ies) {', '.join(outside[:3])} are outside the {group} group")
    conn = Connection(host=host, token=token, rate=rate, retries=retries, backoff=backoff)
    existing, _groups = _property_index(conn)
    foreign = sorted({p for p in audited if p in existing and existing[p].group_name != group})
    if foreign:
        raise InputError(f"audit file {audit}: propert(ies) {', '.join(foreign[:3])} are not in the {group} group")
    names = sorted({p for _, p in first if p in existing})
    spec_by_name = {n: PropertySpec(n, n, existing[n].type, existing[n].field_type, "") for n in names}
    writer = CompanyWriter(conn, group, set(names))
    ids = sorted({c for c, _ in first})
    current, missing, merged = writer.read(ids, names)
    if ids and not current:
        raise InputError(f"audit file {audit}: none of its {counted(len(ids), 'company')} is in the portal at {conn.host} "
                         "(e.g. " + ", ".join(ids[:3]) + "): it belongs to another portal")
    changes, conflicts = [], 0
    for (company_id, name), row in first.items():
        if company_id in merged or company_id not in current or name not in spec_by_name:
            continue
        now = current[company_id].get(name)
        spec = spec_by_name[name]
        if _same(now, row["old_value"], spec):
            continue  # already restored
        if not _same(now, last_new[(company_id, name)], spec):
            conflicts += 1  # changed in HubSpot since the push: leave it
            continue
        changes.append(Change(company_id, name, now, row["old_value"]))
    report = PushReport(mode="applied" if apply else "dry run", action="rollback", companies=len(ids),
                        missing=sorted(missing), changes=changes, conflicts=conflicts,
                        model_version=rows[0].get("model_version", "") if rows else "",
                        score_property=f"{prefix}score", merged=merged,
                        not_written={i: f"merged into {into or 'a company HubSpot did not name'} since the push: "
                                     "left as it is" for i, into in merged.items()})
    if unwritable := report.unwritable():
        warnings.warn(unwritable, UserWarning, stacklevel=1)
    weights_name = f"{prefix}{WEIGHTS_PROPERTY}"
    weights_current = existing.get(weights_name)
    weights_target, report.calculated = _plan_weights_rollback(definitions, weights_name, weights_current, apply)
    if apply:
        report.audit = audit.with_name(f"{audit.stem}.rollback{audit.suffix}")
        log = Audit(report.audit, uuid.uuid4().hex[:12], report.model_version, conn.host)
        if weights_target is not None:
            log.record([Change("", weights_name, portal_definition(weights_current), weights_target)])
            report.calculated = _restore_weights(conn, weights_name, weights_target, weights_current, group,
                                                 report.model_version)
        updates: dict[str, dict[str, str]] = {}
        by_company: dict[str, list[Change]] = {}
        for change in changes:
            updates.setdefault(change.company_id, {})[change.property] = change.new
            by_company.setdefault(change.company_id, []).append(change)
        report.written, report.failed = _write_or_explain(
            writer, updates, lambda chunk: log.record([c for i in chunk for c in by_company[i]]), "rollback",
            report.audit, rerun=f"hsutils rollback {audit} --apply")
    report.requests = conn.stats.requests
    report.retries = sum(conn.stats.retries.values())
    report.seconds = time.perf_counter() - started
    return report


def _finish(report: PushReport) -> int:
    """Print the summary; an applied run that left companies of its input unwritten (refused by HubSpot, no longer
    in HubSpot, merged where their values cannot go) also says so in one line on stderr (exit code 1)."""
    print(report.summary())
    unwritten = len(report.failed) + len(report.missing) + len(report.not_written)
    if report.mode == "dry run" or not unwritten:
        return 0
    parts = []
    if report.failed:
        company, reason = next(iter(report.failed.items()))
        parts.append(f"{len(report.failed):,} refused by HubSpot, e.g. {company}: {reason[:160]}")
    if report.missing:
        parts.append(f"{len(report.missing):,} no longer in HubSpot, e.g. {report.missing[0]}")
    if report.not_written:
        company, reason = next(iter(report.not_written.items()))
        parts.append(f"{len(report.not_written):,} merged, e.g. {company} {reason}")
    where = (f"the audit {report.audit} holds what was written" if report.audit and report.audit.exists()
             else "nothing was written")
    print(f"hsutils {report.action}: partial: {unwritten:,} of {counted(report.companies, 'company')} not written "
          f"({'; '.join(parts)}); {where}", file=sys.stderr)
    return 1


def cli_push(args) -> int:
    """`hsutils push --model MODEL.yml --scores FILE [--apply]`."""
    return _finish(push(args.model, args.scores, host=args.host, apply=args.apply,
                        config=getattr(args, "config", None), audit=getattr(args, "audit", None),
                        rate=getattr(args, "rate", "pro"), progress=True))


def cli_rollback(args) -> int:
    """`hsutils rollback AUDIT [--apply]`."""
    return _finish(rollback(args.audit, host=args.host, apply=args.apply, config=getattr(args, "config", None),
                            rate=getattr(args, "rate", "pro")))

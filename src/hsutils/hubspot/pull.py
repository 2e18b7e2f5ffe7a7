"""Pull a HubSpot portal into a new canonical snapshot.

Objects are listed 100 a page with the properties the portal configuration names; associations are read with
the v4 batch endpoint (1,000 ids a request) and carry their labels, which map contacts to roles. Every page and
association chunk is saved in a checkpoint folder beside the output (`<out>.checkpoint/`), so a pull that
crashed resumes where it stopped. Product usage comes from an event export file (`--usage`, or `usage.file` in
the portal config) joined on the HubSpot company id or the company domain; without one, usage_events is empty
and the usage signals are unknown. The result is validated before it is written atomically.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from hsutils.errors import InputError, counted, example_rows
from hsutils.files import write_text_atomic
from hsutils.hubspot.client import DEFAULT_HOST, Connection, HubSpotError
from hsutils.hubspot.config import (
    ENGAGEMENT_OBJECTS,
    ENGAGEMENT_TYPE,
    PortalConfig,
    TableMap,
    load_config,
    value_key,
)
from hsutils.progress import progress_bar
from hsutils.schema import SCHEMA_VERSION, TABLES, empty_frame
from hsutils.snapshot import Manifest, Snapshot, parse_utc, write_snapshot
from hsutils.validate import (
    FALSE_WORDS,
    TRUE_WORDS,
    clear_unknown_contacts,
    epoch_placeholders,
    is_unset_time,
    row_checks,
    unset_times_text,
    validate_snapshot,
)

PAGE_SIZE = 100
NO_USAGE_WARNING = ("no product usage export (--usage FILE, or usage.file in --config): usage_events is empty, so "
                    "core-workflow depth, seat utilisation, logins and feature breadth are unknown in the panel")
ASSOC_BATCH = 1000
LIST_API = {"companies": "crm.companies.basic_api", "contacts": "crm.contacts.basic_api",
            "deals": "crm.deals.basic_api", "tickets": "crm.tickets.basic_api",
            "emails": "crm.objects.emails.basic_api", "meetings": "crm.objects.meetings.basic_api",
            "calls": "crm.objects.calls.basic_api", "notes": "crm.objects.notes.basic_api",
            "feedback_submissions": "crm.objects.feedback_submissions.basic_api"}
EPOCH_NUMBER = re.compile(r"^-?\d+(\.\d*)?$")
INT64_LIMIT = 2.0**63
# columns the pull fills itself when their property is empty: the record's creation time, the company tier
FILLED_BY_PULL = {"companies": ("created_at", "tier"), "contacts": ("created_at",), "tickets": ("created_at",),
                  "engagements": ("occurred_at",), "surveys": ("submitted_at",)}
# deal columns the pull fills itself when the portal lacks a property the built-in defaults name (stock portals have
# no contract term or seat properties), and what it does instead
# HubSpot's deal properties for multi-currency portals: each deal's currency, and its amount in the company currency
CURRENCY_PROPERTY = "deal_currency_code"
HOME_AMOUNT_PROPERTY = "amount_in_home_currency"
# tables the pull fills without an object type HubSpot refuses (403, a token without its scope): an engagement type,
# the feedback submissions; what the snapshot then lacks
OPTIONAL_TABLES = {"engagements": "the engagements table holds none of them", "surveys": "the surveys table is empty"}
LEFT_OUT = "left out"  # the count of an unlisted pipeline's deals that were not read (see unlisted_pipeline_deal)
# HubSpot-defined association type ids marking a record's primary company (contact, deal, ticket -> company)
PRIMARY_COMPANY_TYPES = {"contacts": 1, "deals": 5, "tickets": 26}
DEAL_FALLBACKS = {"term_start": "a deal's term starts at its close date",
                  "term_end": "a deal's term ends {months} months (deals.term_months) after it starts",
                  "seats": "seats are not recorded, so seat utilisation is unknown"}


# ----- value conversion ------------------------------------------------------------------------------------
def to_datetime(raw: Any) -> datetime | None:
    """A HubSpot date/datetime value (ISO-8601, a date, or epoch milliseconds) as aware UTC, None if unreadable."""
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    try:
        if EPOCH_NUMBER.match(text):  # epoch milliseconds (or seconds), "1700000000000" or "1700000000000.0"
            number = float(text)
            return datetime.fromtimestamp(number / 1000 if abs(number) > 10**11 else number, UTC)
        return parse_utc(text)
    except (ValueError, OverflowError, OSError):
        return None


def to_bool(raw: Any) -> bool | None:
    """A HubSpot yes/no value as a bool: a number (a count such as hs_email_open_count) is true above 0, a word is
    read as snapshot files' yes/no columns read it (validate.TRUE_WORDS, FALSE_WORDS); None for anything else."""
    if raw is None or raw == "":
        return None
    text = str(raw).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return True if text in TRUE_WORDS else False if text in FALSE_WORDS else None
    return number > 0 if math.isfinite(number) else None  # "nan" or "inf" says neither yes nor no


def to_number(raw: Any, kind: str) -> float | int | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(str(raw).replace(",", ""))
    except ValueError:
        return None
    if not math.isfinite(value) or (kind == "int" and abs(value) >= INT64_LIMIT):
        return None  # "NaN", "Infinity", or a count no 64-bit column holds: unreadable, like text
    return int(round(value)) if kind == "int" else value


def convert(table: str, column: str, raw: Any, tmap: TableMap) -> Any:
    """One portal value as the canonical column's type (values mapped, defaults applied)."""
    kind = TABLES[table].column(column).kind if column in TABLES[table].column_names else "str"
    if raw is None or raw == "":
        return tmap.defaults.get(column)
    if kind == "datetime":
        return to_datetime(raw)
    if kind == "bool":  # a word that says neither yes nor no takes the config's default, as an unmapped value does
        value = to_bool(raw)
        return tmap.defaults.get(column) if value is None else value
    if kind in ("int", "float"):
        return to_number(raw, kind)
    value = tmap.to_canonical(column, str(raw))
    spec = TABLES[table].column(column) if column in TABLES[table].column_names else None
    if spec is not None and spec.values is not None:
        mapped = enum_value(spec.values, value)
        return tmap.defaults.get(column, value) if mapped is None else mapped
    return value


def enum_value(allowed: Collection[str], value: Any) -> str | None:
    """A value mapped through the config as one of an enum column's `allowed` values (matched by value_key), or
    None when it is none of them."""
    if value in allowed:
        return value
    key = value_key(value)
    return key if key in allowed else None


# ----- checkpoints -------------------------------------------------------------------------------------------
class Checkpoint:
    """Pages and association chunks saved as JSON files, so an interrupted pull resumes.

    Nothing is written before `begin()`, which the pull calls once its up-front checks pass: until then what is
    saved is held in memory, so a refused run leaves no folder behind and a previous run's checkpoint as it was
    (one of another configuration or portal is replaced only when `begin()` runs)."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        try:
            self.resumed = json.loads((folder / "meta.json").read_text())["fingerprint"] == fingerprint
        except (OSError, ValueError, KeyError, TypeError):
            self.resumed = False
        if folder.exists() and not (folder.is_dir() and (not any(folder.iterdir()) or (folder / "meta.json").is_file())):
            # begin() and remove() delete the folder: never one that is not a checkpoint
            raise InputError(f"checkpoint {folder} exists and is not a pull checkpoint (no meta.json): name a new "
                             "folder with --checkpoint, or move it away")
        self._held: dict[tuple[str, int], Any] | None = {}  # None once writing to the folder

    @staticmethod
    def _write(path: Path, payload: Any) -> None:
        write_text_atomic(path, json.dumps(payload))

    def begin(self) -> None:
        """Start keeping pages on disk: replace a checkpoint of another fingerprint, then write what was held."""
        if self._held is None:
            return
        if not self.resumed and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write(self.folder / "meta.json", {"fingerprint": self.fingerprint})
        held, self._held = self._held, None
        for (kind, n), payload in held.items():
            self.save(kind, n, payload)

    def load(self, kind: str, n: int) -> Any | None:
        if self._held is not None:
            if (kind, n) in self._held:
                return self._held[(kind, n)]
            if not self.resumed:  # the folder, if any, holds another fingerprint's pages
                return None
        path = self.folder / kind / f"{n:06d}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None

    def save(self, kind: str, n: int, payload: Any) -> None:
        if self._held is not None:
            self._held[(kind, n)] = payload
            return
        (self.folder / kind).mkdir(parents=True, exist_ok=True)
        self._write(self.folder / kind / f"{n:06d}.json", payload)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ----- the reader ----------------------------------------------------------------------------------------------
@dataclass
class PullResult:
    """What a pull produced: the snapshot folder, rows per table, skipped rows by reason, request figures."""

    out: Path
    rows: dict[str, int]
    skipped: Counter
    requests: int
    retries: int
    seconds: float
    resumed: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # findings about the portal itself, not about the pull

    def summary(self) -> str:
        rows = ", ".join(f"{t} {n:,}" for t, n in self.rows.items())
        lines = [f"pulled {self.out}: {rows}",
                 f"  {self.requests:,} requests ({self.retries:,} retries) in {self.seconds:.1f} s"
                 + (" (resumed from checkpoint)" if self.resumed else "")]
        lines += [f"  skipped {n:,}: {reason}" for reason, n in sorted(self.skipped.items())]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class Reader:
    """Reads objects and associations from one portal with checkpoints and progress bars."""

    def __init__(self, conn: Connection, checkpoint: Checkpoint, progress: bool) -> None:
        self.conn = conn
        self.ckpt = checkpoint
        self.progress = progress
        self.skipped: Counter = Counter()  # records left out while reading (archived ones), by reason
        self.refused: dict[str, str] = {}  # object types of OPTIONAL_TABLES HubSpot refused: {type: warning}

    def go_without(self, table: str, object_type: str, exc: HubSpotError) -> bool:
        """Whether the pull goes on without `object_type` after `exc`: yes for a 403 (a token without its scope) on
        an object type of an optional table (an engagement type, the surveys' feedback submissions), noted with a
        warning in `refused` (not in the checkpoint: a rerun with a better token reads it); anything else stops."""
        if exc.status != 403 or table not in OPTIONAL_TABLES:
            return False
        self.refused.setdefault(object_type, f"{object_type} not pulled ({OPTIONAL_TABLES[table]}): {exc}")
        return True

    def _bar(self, desc: str, total: int | None = None, unit: str = "obj") -> tqdm:
        return progress_bar(total=total, desc=desc, unit=unit, show=self.progress)

    def objects(self, object_type: str, properties: list[str]) -> list[dict[str, Any]]:
        """Every record of `object_type` with `properties`, 100 a page, resumable; archived records (the recycle
        bin) are left out and counted."""
        api = self.conn.api(LIST_API.get(object_type, "crm.objects.basic_api"))
        args = (object_type,) if object_type not in LIST_API else ()

        def fetch(after: str | None) -> dict[str, Any]:
            page = self.conn.call_json(f"list {object_type}", api.get_page, *args, limit=PAGE_SIZE, after=after,
                                       properties=properties, archived=False)
            return {"results": [{"id": str(r["id"]), "properties": r.get("properties") or {},
                                 "createdAt": r.get("createdAt"), "archived": r.get("archived") is True}
                                for r in page.get("results") or []],
                    "next": _next_after(page)}

        with self._bar(f"{object_type:>20}") as bar:
            records = self._paged(f"objects-{object_type}", fetch, bar)
        archived = [r for r in records.values() if r.get("archived")]
        if archived:
            self.skipped[f"{object_type} archived in HubSpot (left out)"] += len(archived)
        return [r for r in records.values() if not r.get("archived")]

    def associations(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[tuple[str, list]]]:
        """{from id: [(to id, [(type id, label, category), ...]), ...]} through the v4 batch read."""
        from hubspot.crm.associations.v4 import (
            BatchInputPublicFetchAssociationsBatchRequest,
            PublicFetchAssociationsBatchRequest,
        )

        api = self.conn.api("crm.associations.v4.batch_api")
        links: dict[str, dict[str, list]] = defaultdict(dict)
        chunks = [ids[i:i + ASSOC_BATCH] for i in range(0, len(ids), ASSOC_BATCH)]
        with self._bar(f"{from_type}->{to_type}", total=len(ids)) as bar:
            for n, chunk in enumerate(chunks):
                saved = self.ckpt.load(f"assoc-{from_type}-{to_type}", n)
                if saved is None:
                    saved = self._read_chunk(api, from_type, to_type, chunk,
                                             BatchInputPublicFetchAssociationsBatchRequest,
                                             PublicFetchAssociationsBatchRequest)
                    self.ckpt.save(f"assoc-{from_type}-{to_type}", n, saved)
                for from_id, items in saved.items():
                    for to_id, types in items:  # a target may come once per association type: merge its types
                        known = links[from_id].setdefault(to_id, [])
                        known += [t for t in types if t not in known]
                bar.update(len(chunk))
        return {from_id: list(targets.items()) for from_id, targets in links.items()}

    def _read_chunk(self, api: Any, from_type: str, to_type: str, chunk: list[str], batch_cls: Any,
                    item_cls: Any) -> dict[str, list]:
        out: dict[str, list] = defaultdict(list)
        pending: list[tuple[str, str | None]] = [(i, None) for i in chunk]
        attempts = 0
        while pending:
            attempts += 1
            body = batch_cls(inputs=[item_cls(id=i, after=a) if a else item_cls(id=i) for i, a in pending])
            answer = self.conn.call_json(f"read {from_type}->{to_type} associations", api.get_page, from_type,
                                         to_type, batch_input_public_fetch_associations_batch_request=body)
            pending = []
            for result in answer.get("results") or []:
                from_id = str(result["from"]["id"])
                for item in result.get("to") or []:
                    out[from_id].append([str(item["toObjectId"]),
                                         [[t.get("typeId"), t.get("label"), t.get("category")]
                                          for t in item.get("associationTypes") or []]])
                after = _next_after(result)
                if after:
                    pending.append((from_id, after))
            retry = []
            for err in answer.get("errors") or []:
                if ("NO_ASSOCIATIONS" in str(err.get("subCategory") or "") or err.get("category") == "OBJECT_NOT_FOUND"
                        or "associated" in str(err.get("message"))):
                    continue  # an object without associations of this type (or deleted since it was listed)
                retry += [str(i) for key in ("ids", "fromObjectId") for i in (err.get("context") or {}).get(key, [])]
            if retry and attempts <= 3:
                pending += [(i, None) for i in retry]
            elif retry:
                raise HubSpotError(f"read {from_type}->{to_type} associations: {len(retry)} id(s) kept failing, "
                                   f"e.g. {', '.join(retry[:3])}")
        return dict(out)

    def _paged(self, kind: str, fetch: Callable[[str | None], dict[str, Any]],
               bar: tqdm | None = None) -> dict[str, dict[str, Any]]:
        """Records by id of a cursor-paged list: each page from the checkpoint, else `fetch(after)` ({"results":
        [...], "next": cursor}) saved to it; up to the last page, or one adding no record not read before."""
        records: dict[str, dict[str, Any]] = {}
        after: str | None = None
        n = 0
        while True:
            saved = self.ckpt.load(kind, n)
            if saved is None:
                saved = fetch(after)
                self.ckpt.save(kind, n, saved)
            added = _add_page(records, saved["results"])
            if bar is not None:
                bar.update(added)
            after, n = saved["next"], n + 1
            if not after or not added:
                return records

    def owners(self) -> list[dict[str, Any]]:
        """The portal's owners, {"id", "name", "email", "deactivated"} each: the active ones, and the deactivated ones
        (users who left; HubSpot lists them only with archived=true) that are not active under the same id."""
        api = self.conn.api("crm.owners.owners_api")
        found: dict[bool, dict[str, dict[str, Any]]] = {}
        for deactivated in (False, True):
            def fetch(after: str | None, deactivated: bool = deactivated) -> dict[str, Any]:
                page = self.conn.call_json(f"list {'deactivated ' if deactivated else ''}owners", api.get_page,
                                           limit=PAGE_SIZE, after=after, archived=deactivated)
                return {"results": [{"id": str(o["id"]), "name": owner_name(o), "email": o.get("email"),
                                     "deactivated": deactivated} for o in page.get("results") or []],
                        "next": _next_after(page)}

            found[deactivated] = self._paged("owners-deactivated" if deactivated else "owners", fetch)
        return [*found[False].values(), *(o for i, o in found[True].items() if i not in found[False])]

    def labels(self, from_type: str, to_type: str) -> list[tuple[int, str | None, str]]:
        """The association types defined from `from_type` to `to_type`, (type id, label, category) each, read as
        plain JSON: a category or field the client's generated models do not know passes through."""
        saved = self.ckpt.load(f"labels-{from_type}-{to_type}", 0)
        if saved is None:
            api = self.conn.api("crm.associations.v4.schema.definitions_api")
            answer = self.conn.call_json(f"read {from_type}->{to_type} association labels", api.get_all, from_type,
                                         to_type)
            saved = [[r.get("typeId"), r.get("label"), r.get("category")] for r in answer.get("results") or []]
            self.ckpt.save(f"labels-{from_type}-{to_type}", 0, saved)
        return [tuple(x) for x in saved]

    def property_groups(self, object_type: str) -> dict[str, str]:
        """{property name: group name} of an object type, read as plain JSON (a property definition holding a field
        or value the client's generated models cannot read passes through)."""
        saved = self.ckpt.load(f"properties-{object_type}", 0)
        if saved is None:
            api = self.conn.api("crm.properties.core_api")
            answer = self.conn.call_json(f"read {object_type} properties", api.get_all, object_type, archived=False)
            saved = {str(p["name"]): p.get("groupName") for p in answer.get("results") or [] if p.get("name")}
            self.ckpt.save(f"properties-{object_type}", 0, saved)
        return saved

    def pipelines(self, object_type: str, warnings: list[str]) -> dict[str, dict[str, Any]] | None:
        """HubSpot's own pipelines of `object_type` ({pipeline id: {"label", "stages": {stage id: {"label",
        "metadata"}}}}), kept in the checkpoint so a resumed pull maps stages as the run that read the pages did.
        None, with one warning, when HubSpot refuses them (403, such as a token without the scope) or does not
        serve them (404): the pull then maps stages from the config alone. A refusal is not kept, so a rerun
        with a better token reads them."""
        saved = self.ckpt.load(f"pipelines-{object_type}", 0)
        if saved is None:
            api = self.conn.api("crm.pipelines.pipelines_api")
            try:
                answer = self.conn.call_json(f"read {object_type} pipelines", api.get_all, object_type)
            except HubSpotError as exc:
                if exc.status not in (403, 404):
                    raise
                warnings.append(f"{exc}; {object_type} stages the portal config does not list are read as open")
                return None
            saved = {str(p["id"]): {"label": p.get("label"),
                                    "stages": {str(st["id"]): {"label": st.get("label"),
                                                               "metadata": st.get("metadata") or {}}
                                               for st in p.get("stages") or [] if st.get("id") is not None}}
                     for p in answer.get("results") or [] if p.get("id") is not None}
            self.ckpt.save(f"pipelines-{object_type}", 0, saved)
        return saved


def _next_after(page: dict[str, Any]) -> str | None:
    """The cursor of a list answer's next page (`paging.next.after`), None on the last page."""
    return ((page.get("paging") or {}).get("next") or {}).get("after")


def _add_page(records: dict[str, dict[str, Any]], page: list[dict[str, Any]]) -> int:
    """Add a page's records not read before to `records` (by id); how many were new. A page adding none (an empty
    page that still hands out a cursor, or the same page again) ends the paging, so it cannot loop forever."""
    new = {r["id"]: r for r in page if r["id"] not in records}
    records.update(new)
    return len(new)


# ----- usage export --------------------------------------------------------------------------------------------
def parse_times(column: pl.Series) -> pl.Series:
    """Event times as UTC datetimes: epoch seconds or milliseconds, ISO-8601 text, or datetime columns."""
    if column.dtype == pl.String:
        text = column.str.strip_chars()
        sample = text.drop_nulls().head(50)
        if sample.len() and sample.str.contains(r"^-?\d+(\.\d+)?$").all():
            column = text.cast(pl.Float64, strict=False)
        else:
            try:
                parsed = text.str.to_datetime(time_unit="us", strict=False)
                parsed = (parsed.dt.replace_time_zone("UTC") if parsed.dtype.time_zone is None
                          else parsed.dt.convert_time_zone("UTC"))
            except Exception:  # mixed formats: fall back to parsing each value
                parsed = pl.Series([None] * len(text), dtype=pl.Datetime("us", "UTC"))
            if parsed.null_count() > text.null_count():
                slow = pl.Series([to_datetime(v) for v in text.to_list()], dtype=pl.Datetime("us", "UTC"))
                parsed = parsed.fill_null(slow)
            return parsed
    if column.dtype.is_numeric():
        seconds = column.cast(pl.Float64)
        frame = pl.DataFrame({"s": seconds}).select(
            pl.when(pl.col("s").abs() > 1e11).then(pl.col("s") / 1000).otherwise(pl.col("s")).alias("s"))
        micros = (frame.get_column("s") * 1_000_000).round(0).cast(pl.Int64)
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")
    if column.dtype == pl.Date:
        column = column.cast(pl.Datetime("us"))
    if isinstance(column.dtype, pl.Datetime):
        column = column.dt.cast_time_unit("us")
        return column.dt.replace_time_zone("UTC") if column.dtype.time_zone is None \
            else column.dt.convert_time_zone("UTC")
    raise InputError(f"usage export: column {column.name} holds {column.dtype}, not timestamps")


def _pick(columns: list[str], candidates: list[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c.lower()] for c in candidates if c.lower() in lowered), None)


def _normal_domain(expr: pl.Expr) -> pl.Expr:
    return (expr.cast(pl.String).str.strip_chars().str.to_lowercase()
            .str.replace(r"^[a-z]+://", "").str.replace(r"^www\.", "").str.replace(r"/.*$", ""))


def _whole_number_ids(ids: pl.Series) -> pl.Series:
    """Company ids as HubSpot writes them: '123' for a float 123.0 or the text '123.0' (an export that went through
    pandas or a spreadsheet holds ids as floats), so that they match the portal's ids."""
    if ids.dtype.is_float():
        return pl.select(pl.when(ids == ids.floor()).then(ids.cast(pl.Int64, strict=False))).to_series().cast(pl.String)
    text = ids.cast(pl.String)
    return text.str.replace(r"^(\d+)\.0+$", "${1}")


def usage_export(path: str | Path) -> Path:
    """The usage export's path, checked to be a file (so a pull can refuse before it reads the portal)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"usage export {path} does not exist")
    return path


def read_usage(path: str | Path, config: PortalConfig, companies: pl.DataFrame, skipped: Counter,
               since: datetime | None = None) -> pl.DataFrame:
    """Canonical usage_events from a Segment / Mixpanel / Amplitude style export, joined to the companies."""
    path = usage_export(path)
    try:
        raw = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # polars raises many types for unreadable files
        raise InputError(f"usage export {path} cannot be read ({type(exc).__name__})") from None
    cols = config.usage_columns
    found = {key: _pick(raw.columns, cols.get(key, [])) for key in ("company_id", "domain", "user_id", "event",
                                                                     "occurred_at", "count")}
    for key in ("user_id", "event", "occurred_at"):
        if found[key] is None:
            raise InputError(f"usage export {path}: no {key} column (looked for {', '.join(cols.get(key, []))}; "
                             f"found {', '.join(raw.columns[:12])}); set usage.columns.{key} in the portal config")
    if found["company_id"] is None and found["domain"] is None:
        raise InputError(f"usage export {path}: no company id or domain column (looked for "
                         f"{', '.join(cols.get('company_id', []) + cols.get('domain', []))})")
    occurred_series = parse_times(raw.get_column(found["occurred_at"]))
    at_epoch = epoch_placeholders(occurred_series.cast(pl.Datetime("us", "UTC")))
    if at_epoch is not None:  # a time never set (see validate.is_unset_time): left out, as an unreadable one is
        skipped["usage events at 1970-01-01 (epoch time 0, a placeholder for a time never set)"] += int(at_epoch.sum())
        raw, occurred_series = raw.filter(~at_epoch), occurred_series.filter(~at_epoch)
    frame = pl.DataFrame({
        "user_id": raw.get_column(found["user_id"]).cast(pl.String),
        "event": raw.get_column(found["event"]).cast(pl.String),
        "occurred_at": occurred_series.cast(pl.Datetime("us", "UTC")),
        "count": (raw.get_column(found["count"]).cast(pl.Float64, strict=False).round(0).cast(pl.Int64)
                  if found["count"] else pl.repeat(1, raw.height, dtype=pl.Int64, eager=True)),
        "hs_company": (_whole_number_ids(raw.get_column(found["company_id"])) if found["company_id"]
                       else pl.repeat(None, raw.height, dtype=pl.String, eager=True)),
        "domain": (raw.get_column(found["domain"]).cast(pl.String) if found["domain"]
                   else pl.repeat(None, raw.height, dtype=pl.String, eager=True)),
    }).with_columns(pl.col("count").fill_null(1))
    bad_time = frame.filter(pl.col("occurred_at").is_null())
    if bad_time.height == frame.height and frame.height:
        raise InputError(f"usage export {path}, column {found['occurred_at']}: no readable timestamps, e.g. "
                         f"{example_rows(raw.select(found['occurred_at']))}")
    if bad_time.height:
        skipped["usage events with an unreadable timestamp"] += bad_time.height
        frame = frame.filter(pl.col("occurred_at").is_not_null())
    known = companies.select(pl.col("company_id"))
    by_id = frame.join(known, left_on="hs_company", right_on="company_id", how="semi")
    rest = frame.join(known, left_on="hs_company", right_on="company_id", how="anti")
    if "domain" in companies.columns and rest.height:
        named = (companies.select(pl.col("company_id"), _normal_domain(pl.col("domain")).alias("d"))
                 .filter(pl.col("d").is_not_null()))
        # a domain several companies share (subsidiaries, a reseller's) cannot tell whose usage an event is
        shared = named.filter(pl.col("d").is_duplicated()).select("d").unique()
        domains = named.join(shared, on="d", how="anti")
        rest = rest.with_columns(_normal_domain(pl.col("domain")).alias("d"))
        ambiguous = rest.join(shared, on="d", how="semi").height
        if ambiguous:
            skipped["usage events for a domain several companies share"] += ambiguous
        matched = rest.join(domains, on="d", how="inner")
        if rest.height - matched.height - ambiguous:
            skipped["usage events for an unknown company"] += rest.height - matched.height - ambiguous
        rest = matched.with_columns(pl.col("company_id").alias("hs_company"))
    else:
        if rest.height:
            skipped["usage events for an unknown company"] += rest.height
        rest = rest.head(0)
    joined = pl.concat([by_id.select("hs_company", "user_id", "occurred_at", "event", "count"),
                        rest.select("hs_company", "user_id", "occurred_at", "event", "count")])
    joined = joined.rename({"hs_company": "company_id"})
    if since is not None:
        joined = joined.filter(pl.col("occurred_at") >= since)
    anonymous = pl.col("user_id").is_null() | pl.col("event").is_null()
    unusable = joined.select(anonymous.sum()).item()
    if unusable:  # e.g. Segment's anonymous events: an empty user_id
        skipped["usage events without a user or an event"] += unusable
    joined = joined.filter(~anonymous)
    return joined.select(TABLES["usage_events"].column_names).sort("company_id", "occurred_at")


# ----- assembling the canonical tables ---------------------------------------------------------------------------
def _frame(table: str, rows: list[dict[str, Any]], extra: list[str] = ()) -> pl.DataFrame:
    schema = dict(TABLES[table].polars_schema)
    schema.update({c: pl.String for c in extra})
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def _drop_incomplete(table: str, rows: list[dict[str, Any]], skipped: Counter) -> list[dict[str, Any]]:
    spec = TABLES[table]
    kept = []
    for row in rows:
        bad = next((c.name for c in spec.columns if not c.nullable and c.default is None and row.get(c.name) is None), None)
        if bad is None:
            bad = next((c.name for c in spec.columns if c.values is not None and row.get(c.name) is not None
                        and row[c.name] not in c.values), None)
        if bad is None:
            kept.append(row)
        else:
            skipped[f"{table} without a usable {bad}"] += 1
    return kept


def id_order(record_id: str) -> tuple[int, int, str]:
    """Sort key of record ids: HubSpot's numeric ids in number order ("9" before "10"), any other text after them."""
    return (0, len(record_id), record_id) if record_id.isdigit() else (1, 0, record_id)


def is_primary_company(types: list, object_type: str) -> bool:
    """Whether an association's types, [(type id, label, category), ...], mark the record's primary company:
    HubSpot's primary type for `object_type` (PRIMARY_COMPANY_TYPES), or a HubSpot-defined label naming a primary
    ("Primary", "Deal with Primary Company": HubSpot renamed the labels, never the type ids)."""
    primary = PRIMARY_COMPANY_TYPES.get(object_type)
    return any(category in (None, "", "HUBSPOT_DEFINED")
               and (str(type_id) == str(primary) or "primary" in str(label or "").casefold())
               for type_id, label, category in types)


def pick_link(links: list[tuple[str, list]], object_type: str | None = None,
              prefer: Sequence[Collection[str]] = ()) -> tuple[tuple[str, list] | None, bool]:
    """The association a record is read with, and whether it was chosen among several with none marked primary.
    The one marked primary company (`object_type` None: links that have no primary, such as to contacts), else the
    only one, else the lowest id among the first of the `prefer` id sets holding any of them (among all if none)."""
    if not links:
        return None, False
    if object_type is not None:
        marked = [link for link in links if is_primary_company(link[1], object_type)]
        if marked:
            return min(marked, key=lambda link: id_order(link[0])), False
    if len(links) == 1:
        return links[0], False
    candidates = next((found for ids in prefer if (found := [link for link in links if link[0] in ids])), links)
    return min(candidates, key=lambda link: id_order(link[0])), True


def several_companies_warning(counts: Counter) -> str:
    """The one warning about records linked to several companies, none marked primary ({object type: records})."""
    listed = ", ".join(f"{object_type} {n:,}" for object_type, n in sorted(counts.items()))
    return (f"{counts.total():,} record(s) linked to several companies, none marked primary, were each read for one "
            f"company ({listed}): the company of a contact linked to it where there is one, else the pulled company "
            "with the lowest id; HubSpot marks no primary company on activities, nor on records older than primary "
            "companies")


def is_empty(value: Any) -> bool:
    """Whether a property value HubSpot sends holds nothing: missing, null or only spaces (an unreadable value such as
    "Infinity" is not empty)."""
    return str(value or "").strip() == ""


def without_unset_times(table: str, object_type: str, records: list[dict[str, Any]], tmap: TableMap) -> list[str]:
    """Empty the time properties of `records` that hold a placeholder for a time never set, the Unix epoch ("0",
    "1970-01-01", "1970-01-01T00:00:00Z": `validate.is_unset_time`, the rule snapshot files are read by), so each
    is read as an empty property is: the column's default, the record's creation time, a deal's term fallback, or
    the record left out and counted. One warning per property that held any."""
    found = []
    for column, prop in tmap.properties.items():
        spec = TABLES[table].column(column) if column in TABLES[table].column_names else None
        if spec is None or spec.kind != "datetime":
            continue
        kinds: Counter = Counter()
        for record in records:
            properties = record["properties"]
            if not is_empty(raw := properties.get(prop)) and is_unset_time(to_datetime(raw)):
                properties[prop] = None
                kinds["0" if EPOCH_NUMBER.match(str(raw).strip()) else "1970-01-01"] += 1
        if kinds:
            found.append(f"table {table}, column {column} ({object_type} property {prop}): "
                         f"{unset_times_text(kinds.total(), sorted(kinds))}")
    return found


def defaulted_on_every_record(object_type: str, records: list[dict[str, Any]], tmap: TableMap,
                              available: Collection[str]) -> list[str]:
    """One warning for each column with a config default whose property the portal has but every record leaves
    empty (a ticket priority nobody sets, a meeting type never filled): the default then stands for the whole
    column, which reads as data (every ticket medium, every meeting 'other') unless said."""
    warnings = []
    for column, default in tmap.defaults.items():
        prop = tmap.properties.get(column)
        if not records or not prop or prop not in available:
            continue
        if all(is_empty(r["properties"].get(prop)) for r in records):
            warnings.append(f"{object_type}: {prop} is empty on all {counted(len(records), 'record')}, so {column} is the "
                            f"config's default ({default}) on every one; fill it in HubSpot or map the portal's own "
                            "property in --config")
    return warnings


def unmapped_values(table: str, object_type: str, records: list[dict[str, Any]], tmap: TableMap) -> list[str]:
    """One warning for each enum column whose property holds values the config's `values` do not map to one the
    snapshot allows (a ticket priority "P1", a CES survey): they read as the config's default (every "P1" ticket
    a medium one), or their records are left out where there is none, which must not pass unsaid."""
    warnings = []
    for column, prop in tmap.properties.items():
        allowed = TABLES[table].column(column).values if column in TABLES[table].column_names else None
        if allowed is None:
            continue
        found = Counter(str(raw).strip() for r in records if not is_empty(raw := r["properties"].get(prop))
                        and enum_value(allowed, tmap.to_canonical(column, str(raw))) is None)
        if not found:
            continue
        listed = ", ".join(f"{value} ({n:,})" for value, n in found.most_common(5))
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        default = tmap.defaults.get(column)
        outcome = (f"read as the default {default}" if default is not None
                   else f"those {found.total():,} record(s) are left out (counted)")
        warnings.append(f"{object_type}: {prop} holds value(s) the config does not map to {', '.join(allowed)}: "
                        f"{listed}{more}; {outcome}; map them under {_section(table, object_type)}.values.{column} "
                        "in --config")
    return warnings


def _section(table: str, object_type: str) -> str:
    """The portal config section of a table's object type (engagements.<type> for an engagement type)."""
    return f"engagements.{object_type}" if table == "engagements" else table


def owner_name(owner: dict[str, Any]) -> str | None:
    """An owner as HubSpot lists it, in words: "First Last" (either alone when the other is empty), else None."""
    parts = [str(owner.get(key) or "").strip() for key in ("firstName", "lastName")]
    return " ".join(part for part in parts if part) or None


def company_owner_ids(companies: list[dict[str, Any]]) -> set[str]:
    """The owner ids the companies name as CS or AE owner."""
    return {v for r in companies for v in (r.get("cs_owner_id"), r.get("ae_owner_id")) if v}


def company_owner_names(companies: list[dict[str, Any]], owners: list[dict[str, Any]]) -> dict[str, str]:
    """{owner id: name} for the owners who own a pulled company as CS or AE owner, for the report's account
    lists: the owner's name, else the email; a deactivated owner (a user who left) is marked so. An owner with
    neither is left out (the report then shows the id)."""
    owned = company_owner_ids(companies)
    names = {}
    for owner in owners:
        words = owner.get("name") or str(owner.get("email") or "").strip()
        if owner["id"] in owned and words:
            names[owner["id"]] = f"{words} (deactivated)" if owner.get("deactivated") else words
    return dict(sorted(names.items()))


def owner_findings(companies: list[dict[str, Any]], owners: list[dict[str, Any]],
                   warnings: list[str]) -> tuple[list[str], list[str]]:
    """Check the companies' CS and AE owner ids against the portal's owners: warn about ids that are no owner,
    active or deactivated (a property that does not hold owner ids); note the deactivated owners (users who left)
    who still own companies, accounts nobody looks after. Returns (notes, those owners' ids)."""
    active = {o["id"] for o in owners if not o.get("deactivated")}
    deactivated = {o["id"] for o in owners if o.get("deactivated")}
    owned = company_owner_ids(companies)
    unknown = owned - active - deactivated
    if unknown:
        warnings.append(f"{len(unknown)} owner id(s) on companies are no portal owner, active or deactivated, e.g. "
                        f"{', '.join(sorted(unknown)[:3])}: check that the owner properties in --config hold owner ids")
    left = sorted(owned & deactivated)
    if not left:
        return [], []
    companies_left = sum(1 for r in companies if {r.get("cs_owner_id"), r.get("ae_owner_id")} & set(left))
    return [f"{len(left)} deactivated owner(s) (users who left) still own {companies_left:,} "
            f"compan{'y' if companies_left == 1 else 'ies'} as CS or AE owner: reassign them in HubSpot"], left


def check_needed_properties(config: PortalConfig, reader: Reader) -> dict[str, str]:
    """Refuse a config naming, for a column no record can be kept without (not nullable, no default, not filled
    by the pull), a property the portal does not have: else every record of that table would be left out.

    A deal's term and seats have a fallback: when the property comes from the built-in defaults (the user's own
    config does not name it) or the user's config sets it to null, the pull fills the column instead (see
    `fill_deal_fallbacks`). Returns {deals column: warning} for those columns."""
    fallbacks: dict[str, str] = {}
    sections = [(table, config.table(table)) for table in ("companies", "contacts", "deals", "tickets", "surveys")]
    sections += [("engagements", config.engagement(object_type)) for object_type in ENGAGEMENT_OBJECTS]
    for table, tmap in sections:
        try:
            available = reader.property_groups(tmap.object_type)
        except HubSpotError as exc:
            if not reader.go_without(table, tmap.object_type, exc):
                raise
            continue
        for column in TABLES[table].column_names:
            spec, prop = TABLES[table].column(column), tmap.properties.get(column)
            if (spec.nullable or spec.default is not None or column in tmap.defaults
                    or column in FILLED_BY_PULL.get(table, ())):
                continue
            fallback = table == "deals" and column in DEAL_FALLBACKS
            if fallback and (not prop or (prop not in available and not config.set_by_user(table, "properties",
                                                                                          column))):
                fallbacks[column] = missing_deal_property_warning(column, prop, config.term_months)
            elif prop and prop not in available:
                raise InputError(f"portal config ({config.source}): {_section(table, tmap.object_type)}.properties."
                                 f"{column} names {prop}, "
                                 f"which is not a property of {tmap.object_type} in the portal, and no {table} "
                                 f"row can be kept without {column}: name the portal's property in the config"
                                 + (" (or null, to pull without it)" if fallback else ""))
    return fallbacks


def deal_fallback(column: str, term_months: int, shifted: int = 0) -> str:
    """What the pull fills a deal column of DEAL_FALLBACKS with; for term_start, with how many renewals (`shifted`)
    start at the end of the term they renew instead (see start_renewals_at_renewed_term_end)."""
    text = DEAL_FALLBACKS[column].format(months=term_months)
    if column == "term_start" and shifted:
        text += f", but {shifted:,} renewal(s) closed before the term they renew ended start at that term's end"
    return text


def missing_deal_property_warning(column: str, prop: str | None, term_months: int, shifted: int = 0) -> str:
    """One line for a deal column of DEAL_FALLBACKS whose property `prop` the portal lacks (or the config names
    none): what the pull fills it with, and where to name the portal's own property."""
    what = f"the portal has no {prop} property" if prop else f"the config names no {column} property"
    return (f"deals: {what}: {deal_fallback(column, term_months, shifted)}; name the {column.replace('_', ' ')} "
            f"property in --config (deals.properties.{column})")


def deal_columns_filled_when_empty(config: PortalConfig, fallbacks: dict[str, str]) -> list[str]:
    """Deal columns whose property the built-in defaults name and the portal has (not `fallbacks`): on a deal where
    it is empty the pull fills the column as `fill_deal_fallbacks` does. A property the user's own config names
    gets no such help: a deal where it is empty is left out and counted (an unfilled mapping shows)."""
    tmap = config.table("deals")
    return [c for c in DEAL_FALLBACKS
            if c not in fallbacks and tmap.properties.get(c) and not config.set_by_user("deals", "properties", c)]


def empty_deal_values_warning(emptied: Counter, deals: int, tmap: TableMap, term_months: int, shifted: int = 0) -> str:
    """One warning line for the deals whose default-named term or seat property was empty (see
    deal_columns_filled_when_empty): how many, which properties on how many, and what filled them (`shifted`: the
    renewals among them starting at the end of the term they renew)."""
    each = "; ".join(f"{tmap.properties[c]} on {n:,}: " + deal_fallback(c, term_months, shifted)
                     for c in DEAL_FALLBACKS if (n := emptied[c]))
    return (f"deals: {deals:,} deal(s) have a contract term or seat property empty, filled as on a portal without "
            f"it ({each}); fill them in HubSpot (or name the portal's own properties in --config)")


def deal_arr_property(records: list[dict[str, Any]], config: PortalConfig, available: list[str],
                      warnings: list[str]) -> str | None:
    """The property a deal's ARR is read from. When deals hold amounts in several currencies, HubSpot's `amount` is
    each deal's own currency: an ARR property from the built-in defaults is then read from the amount in the company
    currency (when the portal has it), and `amount` named by the user's config is kept with a warning."""
    prop = config.table("deals").properties.get("arr")
    codes = Counter(code for r in records if (code := str(r["properties"].get(CURRENCY_PROPERTY) or "").strip()))
    if len(codes) < 2 or prop != "amount":
        return prop
    listed = ", ".join(f"{code} {n:,}" for code, n in sorted(codes.items()))
    if HOME_AMOUNT_PROPERTY in available and not config.set_by_user("deals", "properties", "arr"):
        warnings.append(f"deals: amounts in {len(codes)} currencies ({listed}): arr is read from "
                        f"{HOME_AMOUNT_PROPERTY} (the company currency), not amount")
        return HOME_AMOUNT_PROPERTY
    warnings.append(f"deals: amounts in {len(codes)} currencies ({listed}) and arr is read from amount, each deal's "
                    f"own currency: map deals.properties.arr to {HOME_AMOUNT_PROPERTY} (the company currency)")
    return prop


def stage_of_metadata(metadata: dict[str, Any]) -> str | None:
    """A deal stage's canonical stage from HubSpot's pipeline metadata: closed at probability 1.0 won, closed at 0.0
    lost, not closed open; None when it does not say (no isClosed, an unreadable probability, or closed at another
    probability, which HubSpot's won and lost stages never are)."""
    closed = str(metadata.get("isClosed", "")).strip().lower()
    if closed == "false":
        return "open"
    try:
        probability = float(str(metadata.get("probability")))
    except ValueError:
        return None
    if closed != "true":
        return None
    return {1.0: "won", 0.0: "lost"}.get(probability)


def portal_stage_map(pipelines: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{pipeline id: {stage id: open | won | lost}} of the stages HubSpot's pipeline metadata maps."""
    return {pid: {sid: mapped for sid, stage in (spec.get("stages") or {}).items()
                  if (mapped := stage_of_metadata(stage.get("metadata") or {})) is not None}
            for pid, spec in pipelines.items()}


def unlisted_pipeline_deal(config: PortalConfig, pipeline: str | None, stage: str | None, deal_type_raw: str | None,
                           portal_stages: dict[str, dict[str, str]]) -> tuple[str, str, str] | None:
    """(deal type, stage, "unlisted pipeline") of a deal in a pipeline the config does not list, read only on what
    the portal states: its deal type property mapped through deals.deal_type_values, and its stage as HubSpot's
    pipeline metadata maps it (never a guess from the pipeline's name). None, to leave it out, when either says
    nothing, or when the config skips such pipelines (deals.unlisted_pipelines: skip)."""
    if not config.reads_unlisted_pipelines or pipeline is None:
        return None
    deal_type = config.deal_type_of(deal_type_raw)
    canonical_stage = (portal_stages.get(str(pipeline)) or {}).get(str(stage))
    return (deal_type, canonical_stage, "unlisted pipeline") if deal_type and canonical_stage else None


def _pipeline_name(pipelines: dict[str, dict[str, Any]], pid: str) -> str:
    """A pipeline in words for a summary line: "Label (id)", the id alone when HubSpot gave no label."""
    label = (pipelines.get(pid) or {}).get("label")
    return f"{label} ({pid})" if label else pid


def unlisted_pipelines_warning(counts: dict[str, Counter], pipelines: dict[str, dict[str, Any]], reads: bool) -> str:
    """One line naming the pipelines the config does not list ({pipeline id: {deal type read, or LEFT_OUT: deals}})
    by label and id, with how many of their deals were read (by deal type) and how many left out."""
    parts = []
    for pid, by_kind in sorted(counts.items()):
        read = ", ".join(f"{kind} {n:,}" for kind, n in sorted(by_kind.items()) if kind != LEFT_OUT)
        parts.append(f"{_pipeline_name(pipelines, pid)} {by_kind.total():,}"
                     + (f" (read: {read}" + (f"; left out {by_kind[LEFT_OUT]:,})" if by_kind[LEFT_OUT] else ")")
                        if read else " left out"))
    how = ("read where the deal type property and HubSpot's stage metadata classify them, else left out"
           if reads else "left out (deals.unlisted_pipelines: skip)")
    return (f"deals: {sum(c.total() for c in counts.values()):,} deal(s) in pipeline(s) the portal config does not "
            f"list, {how}: {', '.join(parts)}; list each pipeline under deals.pipelines with its deal_type to read all "
            "its deals")


def unlisted_pipelines_record(counts: dict[str, Counter], pipelines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest's record of the pipelines the config does not list: {pipeline id: {"label", "deals", "read"}}."""
    return {pid: {"label": (pipelines.get(pid) or {}).get("label"), "deals": counted.total(),
                  "read": counted.total() - counted[LEFT_OUT]}
            for pid, counted in sorted(counts.items())}


def stages_from_hubspot_warning(counts: Counter, pipelines: dict[str, dict[str, Any]]) -> str:
    """One line naming the deal stages mapped from HubSpot's pipeline metadata ({(pipeline, stage, canonical):
    deals}): the won and lost ones by label and id with their deal counts, the open ones counted."""
    def name(pid: str, sid: str) -> str:
        spec = pipelines.get(pid) or {}
        stage = (spec.get("stages") or {}).get(sid) or {}
        return f"{spec.get('label') or pid}/{stage.get('label') or sid} ({pid}/{sid})"

    parts = [f"{canonical}: " + ", ".join(f"{name(pid, sid)} {n:,}" for (pid, sid, c), n in sorted(counts.items())
                                          if c == canonical)
             for canonical in ("won", "lost") if any(c == canonical for *_, c in counts)]
    open_stages = [n for (*_, c), n in counts.items() if c == "open"]
    if open_stages:
        parts.append(f"open: {sum(open_stages):,} deal(s) in {len(open_stages)} stage(s)")
    return (f"deals: {counts.total():,} deal(s) in stage(s) the portal config does not list, mapped from HubSpot's "
            f"pipeline metadata (closed at probability 1.0 won, at 0.0 lost, else open): {'; '.join(parts)}; list a "
            "stage under deals.pipelines.<pipeline>.stages to map it otherwise")


def carry_renewed_term_arr(rows: list[dict[str, Any]], without_arr: Collection[str]) -> Counter:
    """Give a deal of `without_arr` (its ARR property empty: a renewal closed without anyone filling the amount)
    the ARR of the term it renews, so that the contract chain holds: a won renewal left out would end the company's
    time as a customer at the previous term's end and leave that term's renewal outcome unknown; a lost one would
    hide the churn. The term it renews is the company's won new or renewal deal that started earlier and ends
    nearest the deal's term start, within the panel's renewal match window (its ARR carried too, if it had none).
    Applies to renewals of any stage and won new deals; a deal with no such term keeps no ARR (it is left out and
    counted). Returns how many deals carried an ARR, by stage."""
    # imported here, not with the module: the panel's own imports would slow every pull's start
    from hsutils.panel import RENEWAL_MATCH_DAYS

    window = timedelta(days=RENEWAL_MATCH_DAYS)
    terms: dict[str, list[dict[str, Any]]] = defaultdict(list)  # each company's won terms with an ARR, so far
    carried: Counter = Counter()
    dated = [r for r in rows if r.get("company_id") is not None and r.get("term_start") is not None]
    for row in sorted(dated, key=lambda r: (r["term_start"], r["deal_id"])):
        eligible = row["deal_type"] == "renewal" or (row["deal_type"] == "new" and row["stage"] == "won")
        if row.get("arr") is None and row["deal_id"] in without_arr and eligible:
            renewed = [t for t in terms[row["company_id"]]
                       if t["term_start"] < row["term_start"] and abs(t["term_end"] - row["term_start"]) <= window]
            if renewed:
                nearest = min(renewed, key=lambda t: (abs(t["term_end"] - row["term_start"]), -t["term_end"].timestamp()))
                row["arr"] = nearest["arr"]
                carried[row["stage"]] += 1
        if (row["deal_type"] in ("new", "renewal") and row["stage"] == "won" and row.get("arr") is not None
                and row.get("term_end") is not None):
            terms[row["company_id"]].append(row)
    return carried


def keep_won_expansions_without_arr(rows: list[dict[str, Any]], without_arr: Collection[str]) -> int:
    """Give a won expansion of `without_arr` (its ARR property empty) an ARR of 0 instead of leaving it out: the
    expansion still happened (the company's outcome_expanded) and its seats are still contracted, while the ARR it
    added is unknown, so none is added. Open and lost expansions add nothing in force: one without an ARR is still
    left out and counted. Returns how many were kept so."""
    kept = 0
    for row in rows:
        if (row["deal_type"] == "expansion" and row["stage"] == "won" and row.get("arr") is None
                and row["deal_id"] in without_arr):
            row["arr"] = 0.0
            kept += 1
    return kept


def carried_arr_warning(carried: Counter, prop: str | None) -> str:
    """One line for the deals that carried the ARR of the term they renew (see carry_renewed_term_arr)."""
    from hsutils.panel import RENEWAL_MATCH_DAYS

    stages = ", ".join(f"{stage} {n:,}" for stage, n in sorted(carried.items()))
    return (f"deals: {carried.total():,} renewal or new deal(s) ({stages}) with {prop or 'the ARR property'} empty "
            f"carry the ARR of the term they renew (the company's previous term ending within {RENEWAL_MATCH_DAYS} "
            "days of their start); fill the amount in HubSpot for the ARR they were closed at")


def fill_deal_fallbacks(row: dict[str, Any], columns: Collection[str], term_months: int) -> None:
    """Fill a deal row's `columns` the portal has no property for (see check_needed_properties), or no value in:
    the term starts at the close date and ends `term_months` later, seats are 0 (not recorded). A deal without a
    close date keeps no term, so it is left out and counted like any deal without one. A renewal closed before the
    term it renews ended is moved to that term's end afterwards (start_renewals_at_renewed_term_end)."""
    if "term_start" in columns:
        row["term_start"] = row.get("close_date")
    if "term_end" in columns:
        row["term_end"] = add_months(row["term_start"], term_months) if row.get("term_start") else None
    if "seats" in columns:
        row["seats"] = 0


def start_renewals_at_renewed_term_end(rows: list[dict[str, Any]], start_filled: Collection[str],
                                       end_filled: Collection[str], term_months: int) -> int:
    """Start the term of a decided renewal whose term start was filled from its close date (deal ids in
    `start_filled`) at the end of the term it renews, when it closed before that term ended: renewals usually close
    weeks early, and a term starting at the close date would overlap the renewed one and lie too far from its end
    for the panel to match the renewal to it (RENEWAL_MATCH_DAYS). The term it renews is the company's won new or
    renewal deal in force at its close (term_start <= close < term_end; the latest-ending one of several). Its term
    end, when filled too (`end_filled`), is `term_months` after the new start; a real term end not after it keeps
    the deal as it is. Each company's deals are taken in close-date order, so a renewal of a shifted renewal
    starts where that one's term ends. Open deals are left as they are. Returns how many renewals were shifted."""
    decided: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("company_id") is not None and row.get("close_date") is not None and row["stage"] != "open":
            decided[row["company_id"]].append(row)
    shifted = 0
    for deals in decided.values():
        deals.sort(key=lambda r: (r["close_date"], id_order(r["deal_id"])))
        terms = [t for t in deals if t["deal_type"] in ("new", "renewal") and t["stage"] == "won"
                 and t.get("term_start") is not None and t.get("term_end") is not None]
        for row in deals:
            if row["deal_type"] != "renewal" or row["deal_id"] not in start_filled:
                continue
            close = row["close_date"]
            in_force = [t for t in terms if t is not row and t["term_start"] <= close < t["term_end"]]
            if not in_force:
                continue
            start = max(t["term_end"] for t in in_force)
            end = add_months(start, term_months) if row["deal_id"] in end_filled else row.get("term_end")
            if end is not None and end > start:
                row["term_start"], row["term_end"] = start, end
                shifted += 1
    return shifted


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus calendar months, the day clamped to the target month's last day (Jan 31 + 1 = Feb 28/29)."""
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def without_future_rows(tables: dict[str, pl.DataFrame], moment: datetime, skipped: Counter) -> dict[str, pl.DataFrame]:
    """Keep the snapshot point-in-time: drop activity dated after `moment` (meetings scheduled ahead, events
    stamped in the future) and clip future close dates of decided deals, counting both in `skipped`."""
    from hsutils.schema import TABLES

    limit = pl.lit(moment).cast(pl.Datetime("us", "UTC"))
    result = dict(tables)
    for name, frame in tables.items():
        times = [c for c in TABLES[name].time_columns if c in frame.columns and frame.schema[c] != pl.Null]
        if not times or frame.height == 0:
            continue
        if name in ("companies", "contacts"):  # created during the pull: keep them (others refer to them)
            result[name] = frame.with_columns(
                pl.when(pl.col(c) > limit).then(limit).otherwise(pl.col(c)).alias(c) for c in times
            )
            continue
        if name == "deals":
            late = frame.filter(pl.col("close_date") > limit).height
            if late:
                skipped["closed deals dated after the pull (close date set to the pull's moment)"] += late
                result[name] = frame.with_columns(
                    pl.when(pl.col("close_date") > limit).then(limit).otherwise(pl.col("close_date")).alias("close_date")
                )
            continue
        main = times[0]
        future = pl.col(main) > limit
        dropped = frame.filter(future).height
        if dropped:
            skipped[f"{name} dated after the pull (scheduled ahead)"] += dropped
        kept = frame.filter(~future | pl.col(main).is_null())
        for column in times[1:]:  # e.g. a ticket closed_at stamped ahead: not yet closed at the pull
            kept = kept.with_columns(pl.when(pl.col(column) > limit).then(None).otherwise(pl.col(column)).alias(column))
        result[name] = kept
    return result


def without_rows_breaking_rules(tables: dict[str, pl.DataFrame], skipped: Counter) -> dict[str, pl.DataFrame]:
    """Leave out the few records a portal holds that break a row rule of the schema (a credit deal with a negative
    amount, a term ending the day it starts, a ticket closed before it was created), so they do not refuse the
    whole snapshot; an optional value breaking a rule of its own (a csat of 0) is emptied instead. Both counted."""
    result = dict(tables)
    for name, frame in tables.items():
        for column, what, across, fine in row_checks(name):
            broken = ~fine.fill_null(True)
            count = frame.select(broken.sum()).item() if frame.height else 0
            if not count:
                continue
            if TABLES[name].column(column).nullable and not across:
                frame = frame.with_columns(pl.when(broken).then(None).otherwise(pl.col(column)).alias(column))
                skipped[f"{name} with {column} emptied: {what}"] += count
            else:
                frame = frame.filter(~broken)
                skipped[f"{name} left out: {what} ({column})"] += count
        result[name] = frame
    return result


def pull(out: str | Path, host: str = DEFAULT_HOST, token: str | None = None,
         config: PortalConfig | str | Path | None = None, usage: str | Path | None = None,
         since: str | datetime | None = None, rate: str | int | None = "pro", progress: bool = True,
         checkpoint: str | Path | None = None, retries: int = 8, backoff: float = 0.5) -> PullResult:
    """Pull the portal at `host` into a new snapshot folder `out`; resumable from `<out>.checkpoint/`."""
    started = time.perf_counter()
    taken_at = datetime.now(UTC)  # the snapshot moment: nothing dated later goes into the snapshot
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists: a snapshot is never overwritten; choose a new folder")
    if not isinstance(config, PortalConfig):
        config = load_config(config)
    usage = usage or config.usage_file
    if usage:
        usage = usage_export(usage)
    since_dt = parse_utc(since) if since is not None else None
    conn = Connection(host=host, token=token, rate=rate, retries=retries, backoff=backoff)
    fingerprint = hashlib.sha256(json.dumps([conn.host, config.raw, str(since_dt)], sort_keys=True,
                                            default=str).encode()).hexdigest()
    ckpt = Checkpoint(Path(checkpoint) if checkpoint else out.with_name(f"{out.name}.checkpoint"), fingerprint)
    reader = Reader(conn, ckpt, progress)
    deal_fallbacks = check_needed_properties(config, reader)
    filled_when_empty = deal_columns_filled_when_empty(config, deal_fallbacks)
    ckpt.begin()  # not refused: from here on pages are kept on disk for a resume
    skipped: Counter = reader.skipped
    warnings: list[str] = list(deal_fallbacks.values())

    def props_for(object_type: str, tmap: TableMap, extra: list[str] = ()) -> list[str]:
        available = reader.property_groups(object_type)
        wanted = sorted(set(tmap.portal_properties()) | set(extra))
        explained = {tmap.properties.get(c) for c in deal_fallbacks} if object_type == "deals" else set()
        missing = [p for p in wanted if p not in available and p not in explained]
        if missing:
            warnings.append(f"{object_type}: propert{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} "
                            "not in the portal (empty columns; map them in --config)")
        return [p for p in wanted if p in available]

    # companies (with the suite's own property group, so the previous score is known)
    cmap = config.table("companies")
    company_groups = reader.property_groups("companies")
    own = sorted(p for p, g in company_groups.items() if g == config.push["group"])
    domain_prop = config.domain_property
    records = reader.objects("companies", props_for("companies", cmap, [p for p in [domain_prop] if p] + own))
    warnings += without_unset_times("companies", "companies", records, cmap)
    warnings += defaulted_on_every_record("companies", records, cmap, company_groups)
    warnings += unmapped_values("companies", "companies", records, cmap)
    companies = []
    for rec in records:
        p = rec["properties"]
        row = {col: convert("companies", col, p.get(prop), cmap) for col, prop in cmap.properties.items()}
        row["company_id"] = rec["id"]
        row["created_at"] = row.get("created_at") or to_datetime(rec.get("createdAt"))
        row["tier"] = row.get("tier") or "unknown"
        row["domain"] = p.get(domain_prop) if domain_prop else None
        row.update({name: p.get(name) for name in own})
        companies.append(row)
    companies = _drop_incomplete("companies", companies, skipped)
    company_ids = {r["company_id"] for r in companies}
    unmarked: Counter = Counter()  # records linked to several companies, none marked primary, by object type

    # contacts with roles from association labels, else a property
    tmap = config.table("contacts")
    roles = config.roles
    role_prop = roles.get("property")
    records = reader.objects("contacts", props_for("contacts", tmap, [role_prop] if role_prop else []))
    warnings += without_unset_times("contacts", "contacts", records, tmap)
    label_roles = {value_key(k): v for k, v in (roles.get("labels") or {}).items()}
    known_labels = {value_key(label) for _, label, _ in reader.labels("contacts", "companies") if label}
    unknown = sorted(str(k) for k in roles.get("labels") or {} if value_key(k) not in known_labels)
    if unknown:
        warnings.append(f"association label(s) {', '.join(unknown)} not defined on contact->company in the portal")
    links = reader.associations("contacts", "companies", [r["id"] for r in records])
    role_values = {value_key(k): v for k, v in (roles.get("values") or {}).items()}
    contacts, contact_company = [], {}
    for rec in records:
        p = rec["properties"]
        chosen, guessed = pick_link(links.get(rec["id"], []), "contacts", [company_ids])
        unmarked["contacts"] += guessed
        row = {col: convert("contacts", col, p.get(prop), tmap) for col, prop in tmap.properties.items()}
        row["contact_id"] = rec["id"]
        row["company_id"] = chosen[0] if chosen else None
        row["created_at"] = row.get("created_at") or to_datetime(rec.get("createdAt"))
        role = None
        for _, label, _ in chosen[1] if chosen else []:
            role = role or label_roles.get(value_key(label)) if label else role
        if role is None and role_prop and p.get(role_prop):
            role = role_values.get(value_key(p[role_prop]))
        row["role"] = role or roles.get("default", "other")
        contacts.append(row)
        if row["company_id"]:
            contact_company[rec["id"]] = row["company_id"]
    contacts = _drop_incomplete("contacts", contacts, skipped)

    # deals of the configured pipelines
    tmap = config.table("deals")
    type_prop = config.deals.get("deal_type_property") or "dealtype"
    currency = [p for p in (CURRENCY_PROPERTY, HOME_AMOUNT_PROPERTY) if p in reader.property_groups("deals")]
    records = reader.objects("deals", props_for("deals", tmap, ["pipeline", "dealstage", type_prop, *currency]))
    warnings += without_unset_times("deals", "deals", records, tmap)
    pipelines = reader.pipelines("deals", warnings) or {}  # none when HubSpot refuses them
    portal_stages = portal_stage_map(pipelines)
    kept, unmapped_stages, from_hubspot = [], Counter(), Counter()
    unlisted: dict[str, Counter] = defaultdict(Counter)  # {pipeline id: {deal type read, or LEFT_OUT: deals}}
    for rec in records:
        pipeline, stage = rec["properties"].get("pipeline"), rec["properties"].get("dealstage")
        mapped = config.deal_type_and_stage(pipeline, stage, rec["properties"].get(type_prop), portal_stages)
        if mapped is None:
            mapped = unlisted_pipeline_deal(config, pipeline, stage, rec["properties"].get(type_prop), portal_stages)
            unlisted[str(pipeline or "(none)")][mapped[0] if mapped else LEFT_OUT] += 1
        if mapped is None:
            label = (pipelines.get(str(pipeline)) or {}).get("label")
            skipped[f"deals in pipeline {pipeline or '(none)'}{f' ({label})' if label else ''}, which the portal "
                    "config does not map (deals.pipelines)"] += 1
            continue
        deal_type, canonical_stage, source = mapped
        kept.append((rec, (deal_type, canonical_stage)))
        if source == "unlisted":
            unmapped_stages[f"{pipeline}/{stage}"] += 1
        elif source == "hubspot":
            from_hubspot[(str(pipeline), str(stage), canonical_stage)] += 1
    if unlisted:
        warnings.append(unlisted_pipelines_warning(unlisted, pipelines, config.reads_unlisted_pipelines))
    if from_hubspot:
        warnings.append(stages_from_hubspot_warning(from_hubspot, pipelines))
    if unmapped_stages:
        listed = ", ".join(f"{key} ({n:,})" for key, n in sorted(unmapped_stages.items()))
        warnings.append(f"deals: {unmapped_stages.total():,} deal(s) in stage(s) the portal config does not list, read "
                        f"as open: {listed}; map won and lost stages under deals.pipelines.<pipeline>.stages")
    arr_property = deal_arr_property([r for r, _ in kept], config, currency, warnings)
    tmap = replace(tmap, properties={**tmap.properties, "arr": arr_property}) if arr_property else tmap
    links = reader.associations("deals", "companies", [r["id"] for r, _ in kept])
    deals, emptied, with_empty, without_arr = [], Counter(), 0, set()
    filled: dict[str, set[str]] = {"term_start": set(), "term_end": set()}  # deal ids whose term the pull filled
    for rec, (deal_type, stage) in kept:
        p = rec["properties"]
        chosen, guessed = pick_link(links.get(rec["id"], []), "deals", [company_ids])
        unmarked["deals"] += guessed
        row = {col: convert("deals", col, p.get(prop), tmap) for col, prop in tmap.properties.items()}
        row.update({"deal_id": rec["id"], "company_id": chosen[0] if chosen else None, "deal_type": deal_type,
                    "stage": stage})
        empty = [c for c in filled_when_empty  # empty, not unreadable ("Infinity" is left out and counted)
                 if row.get(c) is None and is_empty(p.get(tmap.properties[c]))]
        emptied.update(empty)
        with_empty += bool(empty)
        fill_deal_fallbacks(row, [*deal_fallbacks, *empty], config.term_months)
        for column, ids in filled.items():
            if column in deal_fallbacks or column in empty:
                ids.add(rec["id"])
        if stage == "open":
            row["close_date"] = None
        if row.get("arr") is None and is_empty(p.get(tmap.properties.get("arr"))):
            without_arr.add(rec["id"])  # empty, not unreadable
        deals.append(row)
    shifted = start_renewals_at_renewed_term_end(deals, filled["term_start"], filled["term_end"], config.term_months)
    if shifted and "term_start" in deal_fallbacks:
        warnings[warnings.index(deal_fallbacks["term_start"])] = missing_deal_property_warning(
            "term_start", tmap.properties.get("term_start"), config.term_months, shifted)
    if emptied:
        warnings.append(empty_deal_values_warning(emptied, with_empty, tmap, config.term_months, shifted))
    carried = carry_renewed_term_arr(deals, without_arr)
    if carried:
        warnings.append(carried_arr_warning(carried, tmap.properties.get("arr")))
    expansions = keep_won_expansions_without_arr(deals, without_arr)
    if expansions:
        warnings.append(f"deals: {expansions:,} won expansion deal(s) with {tmap.properties.get('arr')} empty are kept "
                        "with ARR 0: they count as expansions and add their seats, but their ARR is unknown and not "
                        "added; fill the amount in HubSpot")
    deals = _drop_incomplete("deals", deals, skipped)

    def activity_rows(object_type: str, table: str, tmap: TableMap, id_column: str, time_column: str) -> list[dict]:
        """Canonical rows of `table` from one activity object since `since`: mapped properties, the record's id,
        its company and contact (a contact's company when the record has none), and the record's creation time
        where the mapped time property is empty. No rows when HubSpot refuses an object type the pull goes without."""
        if object_type in reader.refused:
            return []
        try:
            records = reader.objects(object_type, props_for(object_type, tmap))
            warnings.extend(without_unset_times(table, object_type, records, tmap))
            if since_dt is not None:
                prop = tmap.properties.get(time_column)
                records = [r for r in records
                           if (t := to_datetime(r["properties"].get(prop)) or to_datetime(r.get("createdAt"))) is None
                           or t >= since_dt]
            warnings.extend(defaulted_on_every_record(object_type, records, tmap,
                                                      reader.property_groups(object_type)))
            warnings.extend(unmapped_values(table, object_type, records, tmap))
            ids = [r["id"] for r in records]
            to_company = reader.associations(object_type, "companies", ids)
            to_contact = reader.associations(object_type, "contacts", ids)
        except HubSpotError as exc:
            if not reader.go_without(table, object_type, exc):
                raise
            return []
        rows = []
        for rec in records:
            contacts_linked = to_contact.get(rec["id"], [])
            their_companies = {contact_company[c] for c, _ in contacts_linked if c in contact_company}
            company, guessed = pick_link(to_company.get(rec["id"], []), object_type, [their_companies, company_ids])
            unmarked[object_type] += guessed
            at_company = {c for c, _ in contacts_linked if company and contact_company.get(c) == company[0]}
            contact, _ = pick_link(contacts_linked, prefer=[at_company, contact_company])
            contact_id = contact[0] if contact else None
            p = rec["properties"]
            row = {col: convert(table, col, p.get(prop), tmap) for col, prop in tmap.properties.items()}
            row.update({id_column: rec["id"], "contact_id": contact_id,
                        "company_id": company[0] if company else contact_company.get(contact_id)})
            row[time_column] = row.get(time_column) or to_datetime(rec.get("createdAt"))
            rows.append(row)
        return rows

    tickets = _drop_incomplete(
        "tickets", activity_rows("tickets", "tickets", config.table("tickets"), "ticket_id", "created_at"), skipped)

    # engagements: emails, meetings, calls, notes (paged here: the client has no get_all for them)
    engagements = []
    for object_type in ENGAGEMENT_OBJECTS:
        tmap = config.engagement(object_type)
        for row in activity_rows(object_type, "engagements", tmap, "engagement_id", "occurred_at"):
            row["type"] = ENGAGEMENT_TYPE[object_type]
            if object_type != "meetings":
                row["meeting_kind"] = None
            if object_type != "emails":
                row["opened"] = row["replied"] = None
            row.setdefault("direction", "outbound")
            engagements.append(row)
    engagements = _drop_incomplete("engagements", engagements, skipped)

    # feedback submissions (NPS / CSAT)
    tmap = config.table("surveys")
    surveys = _drop_incomplete(
        "surveys", activity_rows(tmap.object_type, "surveys", tmap, "response_id", "submitted_at"), skipped)
    owners = reader.owners()
    warnings += reader.refused.values()
    if unmarked.total():
        warnings.append(several_companies_warning(+unmarked))

    # keep rows whose company was pulled
    for name, rows in (("contacts", contacts), ("deals", deals), ("tickets", tickets), ("engagements", engagements),
                       ("surveys", surveys)):
        before = len(rows)
        rows[:] = [r for r in rows if r["company_id"] in company_ids]
        if before - len(rows):
            skipped[f"{name} of a company not pulled"] += before - len(rows)

    tables = {
        "companies": _frame("companies", companies, ["domain", *own]),
        "contacts": _frame("contacts", contacts),
        "deals": _frame("deals", deals),
        "engagements": _frame("engagements", engagements),
        "tickets": _frame("tickets", tickets),
        "surveys": _frame("surveys", surveys),
    }
    if usage:
        tables["usage_events"] = read_usage(usage, config, tables["companies"], skipped, since_dt)
    else:  # product usage is not stored in HubSpot: without an export the usage signals are unknown
        tables["usage_events"] = empty_frame("usage_events")
        warnings.append(NO_USAGE_WARNING)
    notes, unowned = owner_findings(companies, owners, warnings)
    # activity linked to a contact that was not pulled (one without a company, say) keeps its company, not the link
    for name, unlinked in clear_unknown_contacts(tables).items():
        skipped[f"{name} linked to a contact not pulled (contact left empty)"] += unlinked.height
    tables = without_future_rows(tables, taken_at, skipped)
    tables = without_rows_breaking_rules(tables, skipped)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION, source="hubspot",
        created_at=taken_at, core_events=config.core_events if usage else [],
        extra={"login_event": config.raw.get("login_event") or "login",
               "hubspot": {"host": conn.host, "config": config.source, "since": str(since_dt) if since_dt else None,
                           "owners": sum(not o.get("deactivated") for o in owners),
                           "deactivated_owners": sum(bool(o.get("deactivated")) for o in owners),
                           "deactivated_company_owners": unowned,
                           "owner_names": company_owner_names(companies, owners), "not_pulled": sorted(reader.refused),
                           "unlisted_pipelines": unlisted_pipelines_record(unlisted, pipelines),
                           "skipped": dict(skipped)}},
    )
    validate_snapshot(Snapshot(manifest=manifest, tables=tables))
    write_snapshot(tables, manifest, out)
    from hsutils.snapshot import load_snapshot

    load_snapshot(out)
    ckpt.remove()
    return PullResult(out=out, rows={t: f.height for t, f in tables.items()}, skipped=skipped,
                      requests=conn.stats.requests, retries=sum(conn.stats.retries.values()),
                      seconds=time.perf_counter() - started, resumed=ckpt.resumed, warnings=warnings,
                      notes=notes)


def cli_pull(args) -> int:
    """`hsutils pull --out DIR [--host] [--since] [--config] [--usage]`."""
    result = pull(args.out, host=args.host, config=args.config, usage=args.usage, since=args.since,
                  rate=getattr(args, "rate", "pro"), checkpoint=getattr(args, "checkpoint", None),
                  progress=not getattr(args, "quiet", False))
    print(result.summary())
    return 0

"""Snapshots: immutable folders of canonical tables (parquet or CSV) plus manifest.json.

`load_snapshot` reads and validates a folder; `write_snapshot` writes parquet tables and the manifest to a
temporary sibling folder and renames it into place, so a failed write leaves nothing behind and an existing
snapshot is never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hsutils.errors import InputError
from hsutils.schema import SCHEMA_VERSION, TABLE_NAMES, TABLES

if TYPE_CHECKING:
    from hsutils.validate import FileRows

MANIFEST = "manifest.json"


def recorded_owner_names(fields: dict[str, Any]) -> Any:
    """What a manifest's fields hold under `hubspot.owner_names` (None when nothing), unchecked."""
    hubspot = fields.get("hubspot")
    return hubspot.get("owner_names") if isinstance(hubspot, dict) else None


@dataclass
class Manifest:
    """What a snapshot is: schema version, where it came from, when it was taken, the product's value events."""

    schema_version: int
    source: str
    created_at: datetime
    core_events: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "source": self.source,
            "created_at": self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "core_events": list(self.core_events),
            **self.extra,
        }

    @property
    def owner_names(self) -> dict[str, str]:
        """{owner id: name} for the companies' owners, as a HubSpot pull records them (`hubspot.owner_names`);
        empty when the snapshot does not know them (a CSV export, say)."""
        names = recorded_owner_names(self.extra)
        return dict(names) if isinstance(names, dict) else {}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        known = {"schema_version", "source", "created_at", "core_events"}
        return cls(
            schema_version=int(raw["schema_version"]),
            source=str(raw["source"]),
            created_at=parse_utc(raw["created_at"]),
            core_events=[str(e) for e in raw["core_events"]],
            extra={k: v for k, v in raw.items() if k not in known},
        )


@dataclass
class Snapshot:
    """A loaded snapshot: the manifest and one polars DataFrame per canonical table (and, for tables read from CSV,
    where their rows are in the file, to name them in messages). `core_events_checked`: the usage table and core
    events that passed the check that every core event occurs (set by validation, so a panel does not repeat it)."""

    manifest: Manifest
    tables: dict[str, pl.DataFrame]
    path: Path | None = None
    file_rows: dict[str, FileRows] = field(default_factory=dict)
    core_events_checked: tuple[pl.DataFrame, tuple[str, ...]] | None = field(default=None, repr=False, compare=False)

    def __getitem__(self, table: str) -> pl.DataFrame:
        return self.tables[table]

    def lazy(self, table: str) -> pl.LazyFrame:
        return self.tables[table].lazy()

    @property
    def as_of_limit(self) -> datetime:
        """The moment the snapshot was taken: nothing in it is dated later."""
        return self.manifest.created_at


def parse_utc(value: Any) -> datetime:
    """Parse an ISO-8601 timestamp (or datetime) into an aware UTC datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def table_file(folder: Path, table: str) -> Path | None:
    """The file holding `table` in `folder` (parquet preferred over CSV), or None."""
    for suffix in (".parquet", ".csv"):
        candidate = Path(folder) / f"{table}{suffix}"
        if candidate.exists():
            return candidate
    return None


def read_manifest(folder: Path) -> Manifest:
    """Read and check `manifest.json`; raise InputError with one line when it is missing or wrong."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(f"snapshot {folder}: {MANIFEST} is missing")
    where = f"snapshot {folder}: {MANIFEST}"
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise InputError(
            f"{where} must hold a JSON object with schema_version, source, created_at, core_events"
        )
    absent = [k for k in ("schema_version", "source", "created_at", "core_events") if k not in raw]
    if "schema_version" in absent:
        raise InputError(f"{where} has no schema_version (this suite reads schema version {SCHEMA_VERSION})")
    version = raw["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int | str) or not str(version).strip().isdigit():
        raise InputError(f"{where}: schema_version must be a whole number, got {version!r}")
    if int(version) != SCHEMA_VERSION:
        raise InputError(f"{where}: schema_version is {int(version)}, this suite reads {SCHEMA_VERSION}")
    if absent:
        raise InputError(f"{where} lacks {', '.join(absent)}")
    events = raw["core_events"]  # may be empty only when usage_events is (checked with the tables)
    if not isinstance(events, list) or not all(isinstance(e, str) and e.strip() for e in events):
        raise InputError(f"{where}: core_events must be a list of event names, got {events!r:.80}")
    names = recorded_owner_names(raw)
    if names is not None and not (isinstance(names, dict) and all(isinstance(v, str) for v in names.values())):
        raise InputError(f"{where}: hubspot.owner_names must map owner ids to names, got {names!r:.80}")
    try:
        return Manifest.from_dict(raw)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{where}: created_at {raw['created_at']!r:.40} is not an ISO-8601 timestamp ({exc})"
        ) from None


def load_snapshot(folder: str | Path, mapping: str | Path | None = None, validate: bool = True) -> Snapshot:
    """Read a snapshot folder (parquet or CSV tables), map portal values, coerce types and validate it.

    `mapping` is an optional YAML file mapping the portal's own values (and column names) to canonical ones,
    see `hsutils.validate.load_mapping`. Raises InputError with one clear line when the folder, a file or a
    value is wrong.
    """
    from hsutils import validate as validation  # local import: validate builds on this module

    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"snapshot folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"snapshot {folder} is not a folder")
    manifest = read_manifest(folder)
    portal = validation.load_mapping(mapping) if mapping else validation.PortalMapping()
    tables: dict[str, pl.DataFrame] = {}
    file_rows: dict[str, validation.FileRows] = {}
    for table in TABLE_NAMES:
        path = table_file(folder, table)
        if path is None:
            raise InputError(f"table {table}: no {table}.parquet or {table}.csv in {folder}")
        raw = validation.read_table_file(path, table)
        value_map, column_map = portal.for_table(table)
        rows = validation.file_rows(path, table) if path.suffix == ".csv" else None
        tables[table] = validation.coerce_table(
            raw, table, value_map, column_map, source=path.name, strip_text=rows is not None, rows=rows,
            time_zone=portal.timezone,
        )
        if rows is not None:  # exports repeat records now and then; typed files are trusted as written
            tables[table], file_rows[table] = validation.drop_repeated_rows(tables[table], table, rows)
        if table == "usage_events":  # one chunk per column: the panel reads them as numpy arrays without a copy
            tables[table] = tables[table].rechunk()
    validation.warn_unknown_contacts(validation.clear_unknown_contacts(tables), file_rows)
    snapshot = Snapshot(manifest=manifest, tables=tables, path=folder, file_rows=file_rows)
    if validate:
        validation.validate_snapshot(snapshot)
    return snapshot


def write_snapshot(
    tables: dict[str, pl.DataFrame],
    manifest: Manifest,
    out: str | Path,
    fmt: str = "parquet",
) -> Path:
    """Write canonical tables and the manifest atomically into a new folder `out`.

    `fmt` is "parquet" (default) or "csv" (header row, ISO-8601 UTC timestamps ending in Z, empty = null).
    Everything is written to a hidden temporary sibling folder that is renamed into place at the end: a failed
    write leaves neither `out` nor the temporary folder behind. Refuses to touch an existing, non-empty `out`.
    """
    out = Path(out)
    if fmt not in ("parquet", "csv"):
        raise InputError(f"unknown snapshot format {fmt!r}: use parquet or csv")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists: a snapshot is never overwritten; choose a new folder")
    missing = [t for t in TABLE_NAMES if t not in tables]
    if missing:
        raise InputError(f"cannot write snapshot {out}: tables missing: {', '.join(missing)}")
    manifest_text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise InputError(f"cannot write snapshot {out}: {exc.strerror or exc}") from None
    try:
        for table in TABLE_NAMES:
            frame = tables[table]
            canonical = [c for c in TABLES[table].column_names if c in frame.columns]
            frame = frame.select(canonical + [c for c in frame.columns if c not in canonical])
            if fmt == "parquet":  # dictionary columns are stored as such: reading them back hashes no text
                frame = frame.with_columns(
                    pl.col(c.name).cast(pl.String).cast(pl.Categorical) for c in TABLES[table].columns
                    if c.dictionary and c.name in frame.columns and frame.schema[c.name] != pl.Categorical
                )
                frame.write_parquet(staging / f"{table}.parquet", compression="zstd", statistics=True)
            else:
                frame.write_csv(staging / f"{table}.csv", datetime_format="%Y-%m-%dT%H:%M:%S%.fZ")
        (staging / MANIFEST).write_text(manifest_text, encoding="utf-8")
        if out.exists():
            out.rmdir()  # an empty folder only (checked above)
        os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"cannot write snapshot {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out

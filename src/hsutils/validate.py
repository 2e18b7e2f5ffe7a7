"""Reading and validating snapshot tables: file readability, type coercion, portal value mapping, checks.

(First version: the validation issue hardens this module with pandera schemas and the full set of checks.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import yaml

from hsutils.errors import InputError, example_rows
from hsutils.schema import TABLES

if TYPE_CHECKING:
    from hsutils.snapshot import Snapshot

TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


def load_mapping(path: str | Path) -> dict[str, dict[str, dict[str, str]]]:
    """Load a value-mapping file: {table: {column: {portal_value: canonical_value}}}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mapping file {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return raw.get("values", raw)


def read_table_file(path: Path, table: str) -> pl.DataFrame:
    """Read one table file as it is on disk (CSV: every column as text)."""
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema=False)


def coerce_table(frame: pl.DataFrame, table: str, value_map: dict[str, dict[str, str]]) -> pl.DataFrame:
    """Cast a raw table to canonical dtypes, add absent optional columns and map portal values."""
    spec = TABLES[table]
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        raise InputError(f"table {table}: required column(s) missing: {', '.join(missing)}")
    exprs = []
    for col in spec.columns:
        if col.name not in frame.columns:
            exprs.append(pl.lit(col.default, dtype=col.dtype).alias(col.name))
            continue
        expr = pl.col(col.name)
        if col.name in value_map:
            expr = expr.cast(pl.String).replace(value_map[col.name])
        if frame.schema[col.name] == pl.String and col.kind == "datetime":
            expr = expr.str.to_datetime(time_zone="UTC", strict=False)
        elif frame.schema[col.name] == pl.String and col.kind == "bool":
            low = expr.str.strip_chars().str.to_lowercase()
            expr = pl.when(low.is_in(TRUE_WORDS)).then(True).when(low.is_in(FALSE_WORDS)).then(False).otherwise(None)
        elif col.kind in ("id", "str", "enum"):
            expr = expr.cast(pl.String)
        expr = expr.cast(col.dtype, strict=False)
        if col.default is not None:
            expr = expr.fill_null(col.default)
        exprs.append(expr.alias(col.name))
    extra = [pl.col(c) for c in frame.columns if c not in spec.column_names]
    return frame.select(exprs + extra)


def validate_snapshot(snapshot: Snapshot) -> None:
    """Check a loaded snapshot; raise InputError naming table, column and example rows on the first problem."""
    for name, spec in TABLES.items():
        frame = snapshot[name]
        for col in spec.columns:
            if not col.nullable and col.default is None:
                bad = frame.filter(pl.col(col.name).is_null())
                if bad.height:
                    raise InputError(
                        f"table {name}, column {col.name}: {bad.height} empty or unreadable value(s), e.g. {example_rows(bad)}"
                    )
            if col.values is not None:
                bad = frame.filter(pl.col(col.name).is_not_null() & ~pl.col(col.name).is_in(col.values))
                if bad.height:
                    raise InputError(
                        f"table {name}, column {col.name}: value(s) outside {'/'.join(col.values)}, e.g. {example_rows(bad)}"
                    )
        if spec.primary_key:
            dup = frame.filter(pl.col(spec.primary_key).is_duplicated())
            if dup.height:
                raise InputError(f"table {name}, column {spec.primary_key}: duplicate keys, e.g. {example_rows(dup)}")


def cli_validate(args) -> int:
    """`hsutils validate DIR`: exit 0 with a one-line summary, or exit 2 with one clear message."""
    from hsutils.snapshot import load_snapshot

    snapshot = load_snapshot(args.dir, mapping=args.mapping)
    rows = ", ".join(f"{t} {f.height:,}" for t, f in snapshot.tables.items())
    print(f"ok: {args.dir} is a valid schema v{snapshot.manifest.schema_version} snapshot ({rows})")
    return 0

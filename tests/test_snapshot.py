"""Snapshot writing (atomic, never overwriting) and reading back (parquet and CSV give the same frames)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from snapshot_factory import build_manifest, build_tables, write_tiny_snapshot

from hsutils.errors import InputError
from hsutils.schema import TABLE_NAMES, TABLES
from hsutils.snapshot import load_snapshot, parse_utc, read_manifest, write_snapshot


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def failing_writer(monkeypatch, method: str, fail_on_call: int, error: BaseException) -> None:
    """Make the `fail_on_call`-th table write raise `error` after the file has been started."""
    original = getattr(pl.DataFrame, method)
    calls = {"n": 0}

    def write(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            Path(path).write_bytes(b"half a file")
            raise error
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, method, write)


@pytest.mark.parametrize(
    ("fmt", "method", "error"),
    [
        ("parquet", "write_parquet", OSError(28, "No space left on device")),
        ("csv", "write_csv", RuntimeError("writer crashed")),
    ],
)
def test_failed_write_leaves_nothing_behind(fmt, method, error, tmp_path: Path, monkeypatch) -> None:
    failing_writer(monkeypatch, method, fail_on_call=4, error=error)
    out = tmp_path / "snapshots" / "2026-01"

    expected = InputError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected):
        write_tiny_snapshot(out, fmt=fmt)

    assert not out.exists()
    assert leftovers(out.parent) == []  # no temporary folder either


def test_unwritable_table_leaves_nothing_behind(tmp_path: Path) -> None:
    tables = build_tables()
    tables["tickets"] = tables["tickets"].with_columns(
        pl.lit([1, 2]).alias("tags")
    )  # a list cannot go to CSV
    with pytest.raises(Exception, match="(?i)csv|list|nested"):
        write_snapshot(tables, build_manifest(), tmp_path / "s", fmt="csv")
    assert leftovers(tmp_path) == []


def test_existing_snapshot_is_refused_and_unchanged(tmp_path: Path) -> None:
    out = write_tiny_snapshot(tmp_path / "s")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    tables = build_tables()
    tables["companies"] = tables["companies"].head(1)
    with pytest.raises(InputError, match="already exists"):
        write_snapshot(tables, build_manifest(source="other"), out)

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == ["s"]


def test_existing_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "s"
    target.write_text("notes", encoding="utf-8")
    with pytest.raises(InputError, match="already exists"):
        write_tiny_snapshot(target)
    assert target.read_text(encoding="utf-8") == "notes"


def test_empty_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    out = write_tiny_snapshot(tmp_path / "s")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{t}.parquet" for t in TABLE_NAMES] + ["manifest.json"]
    )


def test_unknown_format_and_missing_table_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown snapshot format"):
        write_tiny_snapshot(tmp_path / "a", fmt="xlsx")
    tables = build_tables()
    del tables["surveys"]
    with pytest.raises(InputError, match="surveys"):
        write_snapshot(tables, build_manifest(), tmp_path / "b")
    assert leftovers(tmp_path) == []


def round_trip(tables: dict[str, pl.DataFrame], manifest, tmp_path: Path) -> None:
    """parquet -> load -> CSV -> load gives the same frames and manifest."""
    parquet = load_snapshot(write_snapshot(tables, manifest, tmp_path / "parquet"))
    csv = load_snapshot(write_snapshot(parquet.tables, parquet.manifest, tmp_path / "csv", fmt="csv"))
    assert all((tmp_path / "csv" / f"{t}.csv").is_file() for t in TABLE_NAMES)
    for table in TABLE_NAMES:
        assert csv[table].schema == TABLES[table].polars_schema
        assert_frame_equal(csv[table], parquet[table])
    assert csv.manifest == parquet.manifest


def test_round_trip_parquet_csv_tiny(tmp_path: Path) -> None:
    tables = build_tables()
    round_trip(tables, build_manifest(), tmp_path)
    loaded = load_snapshot(tmp_path / "csv")
    for table in TABLE_NAMES:
        assert_frame_equal(loaded[table], tables[table])


def test_round_trip_parquet_csv_demo(small_demo: Path, tmp_path: Path) -> None:
    snapshot = load_snapshot(small_demo)
    round_trip(snapshot.tables, snapshot.manifest, tmp_path)


def test_optional_columns_absent_are_added(tmp_path: Path) -> None:
    tables = build_tables()
    tables["usage_events"] = tables["usage_events"].drop("count")
    tables["companies"] = tables["companies"].drop("employees", "industry")
    snapshot = load_snapshot(write_tiny_snapshot(tmp_path / "s", fmt="csv", tables=tables))
    assert snapshot["usage_events"]["count"].to_list() == [1] * 8
    assert snapshot["companies"]["employees"].null_count() == 3
    assert snapshot["companies"].columns == TABLES["companies"].column_names


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    tables = build_tables()
    tables["companies"] = tables["companies"].with_columns(pl.Series("hs_region", ["EMEA", "NA", "APAC"]))
    snapshot = load_snapshot(write_tiny_snapshot(tmp_path / "s", fmt="csv", tables=tables))
    assert snapshot["companies"]["hs_region"].to_list() == ["EMEA", "NA", "APAC"]


def test_manifest_round_trip_keeps_extra_keys(tmp_path: Path) -> None:
    out = write_tiny_snapshot(tmp_path / "s")
    raw = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert raw["created_at"] == "2026-01-01T00:00:00Z" and raw["login_event"] == "login"
    assert read_manifest(out) == build_manifest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T10:00:00Z", "2025-03-01T10:00:00+00:00"),
        ("2025-03-01T12:00:00+02:00", "2025-03-01T10:00:00+00:00"),
        ("2025-03-01", "2025-03-01T00:00:00+00:00"),
        ("2025-03-01 10:00:00", "2025-03-01T10:00:00+00:00"),
    ],
)
def test_parse_utc(text: str, expected: str) -> None:
    assert parse_utc(text).isoformat() == expected


def test_files_written_whole_or_not_at_all_get_a_plain_files_permissions(tmp_path):
    """Outputs go through a temporary file, which is created private (0600); the finished file gets the mode a plainly
    created file gets under the umask, so a reports folder shared with the team is readable by it."""
    import os
    import stat

    import polars as pl

    from hsutils.files import write_frame_atomic, write_text_atomic

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = stat.S_IMODE(plain.stat().st_mode)
    written = [write_text_atomic(tmp_path / "metrics.json", "{}"),
               write_frame_atomic(pl.DataFrame({"a": [1]}), tmp_path / "scores.parquet"),
               write_frame_atomic(pl.DataFrame({"a": [1]}), tmp_path / "scores.csv")]
    assert {stat.S_IMODE(os.stat(path).st_mode) for path in written} == {expected}


def test_owner_names_in_the_manifest_are_read_and_a_wrong_shape_is_one_line(tmp_path):
    """`hubspot.owner_names` ({owner id: name}) is read from the manifest, a snapshot without it knows no names;
    anything else there is refused in one line."""
    folder = write_tiny_snapshot(tmp_path / "snap", fmt="csv")
    assert load_snapshot(folder).manifest.owner_names == {}
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["hubspot"] = {"owner_names": {"41234567": "Jane Doe (deactivated)"}, "owners": 3}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert load_snapshot(folder).manifest.owner_names == {"41234567": "Jane Doe (deactivated)"}
    manifest["hubspot"]["owner_names"] = ["Jane Doe"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"manifest\.json: hubspot\.owner_names must map owner ids to names"):
        load_snapshot(folder)

"""Files the suite writes and reads: whole-or-nothing writes, and YAML mappings with one-line errors.

Every output of the suite (model files, metrics, panels, scores) goes through a temporary file in the target
folder and a rename, so a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from hsutils.errors import InputError

CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
FRAME_SUFFIXES = (".parquet", ".csv")


def write_atomic(out: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(temporary_path)` in `out`'s folder, then rename the result to `out`; clean up on failure."""
    out = _not_a_folder(Path(out), "output")
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError(f"output {out}: {out.parent} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        write(Path(temp))
        os.chmod(temp, PLAIN_FILE_MODE)  # mkstemp's 0600 would hide a shared reports folder from the team
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return out


def _read_umask() -> int:
    """This process's umask (read once, at import: setting it to read it is not safe while threads create files)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


PLAIN_FILE_MODE = 0o666 & ~_read_umask()  # what a plainly created file gets (0644 under the usual umask 022)


def write_text_atomic(out: str | Path, text: str) -> Path:
    """Write UTF-8 text to `out` whole or not at all."""
    return write_atomic(out, lambda temp: temp.write_text(text, encoding="utf-8"))


def check_frame_suffix(out: str | Path, what: str = "--out") -> Path:
    """`out` as a Path, or an InputError when it is neither .parquet nor .csv."""
    out = Path(out)
    if out.suffix.lower() not in FRAME_SUFFIXES:
        raise InputError(f"{what} {out}: use a .parquet or .csv file name")
    return _not_a_folder(out, what)  # found before any work, not only by the writer at the end of it


def _not_a_folder(out: Path, what: str) -> Path:
    """`out`, or an InputError when it is an existing folder."""
    if out.is_dir():
        raise InputError(f"{what} {out} is a folder; name a file")
    return out


def write_frame_atomic(frame: pl.DataFrame, out: str | Path) -> Path:
    """Write a frame to .parquet (zstd) or .csv (ISO-8601 UTC timestamps) whole or not at all."""
    out = check_frame_suffix(out)
    if out.suffix.lower() == ".parquet":
        return write_atomic(out, lambda temp: frame.write_parquet(temp, compression="zstd"))
    return write_atomic(out, lambda temp: frame.write_csv(temp, datetime_format=CSV_DATETIME_FORMAT))


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; InputError naming `what` (e.g. "mapping file") otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{what} {path} must hold a mapping of name: value")
    return raw

"""Files the suite writes and reads: whole-or-nothing writes, and YAML mappings with one-line errors.

Users' YAML (portal config, mapping file, report parameters, model files) is read by `TextKeysLoader`: PyYAML's
YAML 1.1 rules would read an unquoted `Yes`, `No`, `On`, `Off` as booleans, `0012` as the octal number 10 and
`1:30` as 90, so a portal value such as `Yes: true` or `On hold: open` would silently never match the portal's text.

Every output of the suite (model files, metrics, panels, scores) goes through a temporary file in the target
folder and a rename, so a failure never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Hashable
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


_BOOL_TAG, _INT_TAG, _FLOAT_TAG = (f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float"))


class TextKeysLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core schema scalars: only true/false (any case) are booleans (yes, no, on,
    off, y, n stay text), integers are decimal (`0012` is 12, not octal 10; 0x and 0o prefixes as written) and there
    are no base-60 numbers (`1:30` stays text); every mapping key is the text written (`0012:`, `1.0:`, `Yes:`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of `node`, each scalar key as its text (merge keys `<<` still merge)."""
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
            else:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
                    )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """A decimal integer (leading zeros allowed), or 0x hexadecimal / 0o octal."""
        text = str(self.construct_scalar(node)).replace("_", "")
        sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
        base = {"0x": 16, "0o": 8}.get(digits[:2].lower(), 10)
        return sign * int(digits[2:] if base != 10 else digits, base)


TextKeysLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
TextKeysLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?i:true|false)$"), list("tTfF"))
TextKeysLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0[xX][0-9a-fA-F]+|0[oO][0-7]+)$"), list("-+0123456789")
)
TextKeysLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"),
)
TextKeysLoader.add_constructor(_INT_TAG, TextKeysLoader.construct_yaml_int)


YES_NO_WORDS = {"true": True, "yes": True, "on": True, "y": True, "false": False, "no": False, "off": False, "n": False}


def yes_no_setting(value: Any) -> bool | None:
    """A yes/no setting of a user's YAML file as a bool: true or false, or a word YAML 1.1 reads as one (yes, no,
    on, off, y, n; any case), so a file written for other YAML readers keeps its meaning; None for anything else."""
    if isinstance(value, bool):
        return value
    return YES_NO_WORDS.get(value.strip().lower()) if isinstance(value, str) else None


def load_yaml_text(text: str) -> Any:
    """The YAML document in `text`, read with `TextKeysLoader` (raises yaml.YAMLError on invalid YAML)."""
    return yaml.load(text, Loader=TextKeysLoader)  # a SafeLoader subclass: no Python objects


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a user's YAML file that must hold a mapping (with `TextKeysLoader`: keys as written, only true/false
    booleans); InputError naming `what` (e.g. "mapping file") otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{what} {path} must hold a mapping of name: value")
    return raw

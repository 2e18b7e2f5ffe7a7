"""The quarterly recalibration report: papermill runs the notebooks in order, nbconvert renders HTML without code.

`run_report(snapshot_dir, period, out="reports")` executes `notebooks/0*.ipynb` with the `hsutils` kernel and
parameters from defaults, an optional YAML file and the run itself (snapshot, period, report folder, the
previous period's folder). The kernel is the Python running hsutils (its own environment, whatever kernels
Jupyter has registered). Everything is written to a staging folder that replaces `reports/<period>/` only when
every notebook succeeded; a failed notebook stops the run, keeps the failed notebook and its log in
`reports/<period>.failed/` and names it with its one-line cause, except that bad input a notebook finds (an
InputError, e.g. a portal without churn) is refused in one line. An interrupted run (Ctrl-C, SIGTERM) removes its
staging folder; two runs into the same reports folder do not overlap (the second is refused). The previous good
report is never touched by a failed or interrupted run. Signal modules of the user's own
(`signal_modules`, absolute paths) are imported here first, so a bad one is refused before any notebook runs, and
every notebook imports them again in its own kernel.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

import nbformat
import yaml

from hsutils.errors import InputError
from hsutils.files import read_yaml_mapping

KERNEL_NAME = "hsutils"
PERIOD_PATTERN = re.compile(r"^(\d{4})Q([1-4])$")
NOTEBOOK_PATTERN = "[0-9][0-9]-*.ipynb"
LEADERSHIP_NOTEBOOK_PREFIX = "04"
METRICS_PARTS = ("signals", "comparison", "backtest", "summary")  # <part>.json written by the notebooks
DEFAULT_PARAMETERS: dict[str, Any] = {
    "horizon_days": 90,
    "cutoff": None,
    "signals": None,
    "segment_column": "arr_segment",
    "n_boot": 200,
    "seed": 0,
    "target_recall": 0.8,
    "capacity_per_owner_per_week": None,
    "save_rate_early": 0.71,
    "save_rate_late": 0.34,
    "mapping": None,
    "signal_modules": [],
}
RUN_PARAMETERS = ("snapshot_dir", "report_dir", "period", "previous_report_dir")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # the colours of a notebook's traceback
SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey", "authorization")


# What a notebook leaves in report_dir for the later ones, and which notebook writes it.
WRITTEN_BY = {
    "panel.parquet": "01-signal-exploration", "signals.json": "01-signal-exploration",
    "model.yml": "02-fit-and-compare", "comparison.json": "02-fit-and-compare",
    "history.parquet": "03-backtest", "renewals.parquet": "03-backtest", "backtest.json": "03-backtest",
}


def require_earlier_outputs(report_dir: str | Path, *names: str) -> Path:
    """The report folder, checked to hold the files `names` that earlier notebooks write there; an InputError that
    names the notebook to run first (a notebook opened on its own in JupyterLab), not a file-not-found traceback."""
    folder = Path(report_dir)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        first = min(WRITTEN_BY[name] for name in missing)
        raise InputError(
            f"report_dir {folder} has no {', '.join(missing)}: run {first} (and the notebooks after it) with the "
            "same report_dir first; notebooks 02-04 read what the earlier ones write there"
        )
    return folder


@dataclass
class ReportResult:
    """Where a finished report is: its folder, the leadership HTML, the merged metrics."""

    folder: Path
    leadership_html: Path
    metrics: dict[str, Any]


class ReportFailed(Exception):
    """A notebook failed; `notebook` is the saved, partly executed notebook (its log is next to it)."""

    def __init__(self, notebook: Path, message: str) -> None:
        super().__init__(message)
        self.notebook = notebook


class ReportInterrupted(KeyboardInterrupt):
    """The run was stopped by `signum` (SIGINT: Ctrl-C; SIGTERM: a scheduler or `kill`); raised like Ctrl-C so
    that papermill shuts the kernel down and the staging folder is removed."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, _frame: Any) -> None:
    """A signal handler turning SIGTERM into ReportInterrupted."""
    raise ReportInterrupted(signum)


def default_notebooks_dir() -> Path:
    """The repository's notebooks/ folder (the package is installed in editable mode from the checkout)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def parse_period(period: str) -> tuple[int, int]:
    """'2026Q4' -> (2026, 4); anything else is an InputError."""
    match = PERIOD_PATTERN.fullmatch(period)
    if not match:
        raise InputError(f"period {period!r} is not of the form YYYYQn, e.g. 2026Q4")
    return int(match.group(1)), int(match.group(2))


def input_error_names() -> set[str]:
    """Class names of InputError and its subclasses: a notebook that raised one of them met bad input."""
    import hsutils.baselines  # noqa: F401  (defines subclasses of InputError)
    import hsutils.model  # noqa: F401

    names, pending = set(), [InputError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def find_previous_report(out: Path, period: str) -> Path | None:
    """The latest finished report folder in `out` for a period before `period`, or None."""
    current = parse_period(period)
    candidates = []
    if out.is_dir():
        for child in out.iterdir():
            match = PERIOD_PATTERN.fullmatch(child.name)
            if match and child.is_dir() and (child / "metrics.json").is_file() and (child / "model.yml").is_file():
                key = (int(match.group(1)), int(match.group(2)))
                if key < current:
                    candidates.append((key, child))
    return max(candidates)[1] if candidates else None


@contextmanager
def reports_folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the reports folder `out` for a run; a second run into it is refused in one line.
    The lock goes with the process, however it ends (no stale lock file)."""
    import fcntl

    handle = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another hsutils report is writing to {out}; run again when it has finished"
            ) from None
        yield
    finally:
        os.close(handle)


def restore_interrupted_swaps(out: Path) -> None:
    """Put back a period's finished report that a run stopped between moving it aside and moving the new one in."""
    for backup in out.glob(".*.previous"):
        final = out / backup.name[1:].removesuffix(".previous")
        if PERIOD_PATTERN.fullmatch(final.name) and not final.exists():
            backup.rename(final)


def this_python_kernel(log: IO[str]) -> type:
    """A kernel manager class for papermill that runs the notebooks in the Python running hsutils (not whatever a
    kernel named "hsutils" in a user's Jupyter folders points at), the kernel's own output going to `log`."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    spec = KernelSpec(
        argv=[sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        name=KERNEL_NAME, display_name="Python (hsutils)", language="python",
    )

    class ThisPythonKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return spec

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

    return ThisPythonKernelManager


def one_line(text: str) -> str:
    """A message on one line: ANSI colours dropped, whitespace runs (newlines too) made one space."""
    return " ".join(ANSI_ESCAPE.sub("", text).split())


def load_parameters(path: str | Path | None) -> dict[str, Any]:
    """Defaults updated by a YAML parameters file; refuses unknown keys and anything that looks like a secret."""
    parameters = copy.deepcopy(DEFAULT_PARAMETERS)
    if path is None:
        return parameters
    raw = read_yaml_mapping(path, "parameters file")
    for key in raw:
        if any(word in str(key).lower() for word in SECRET_WORDS):
            raise InputError(
                f"parameters file {path}: {key!r} looks like a secret; tokens come from the environment, never parameters"
            )
        if key not in DEFAULT_PARAMETERS:
            raise InputError(f"parameters file {path}: unknown parameter {key!r} (known: {', '.join(DEFAULT_PARAMETERS)})")
    parameters.update(raw)
    if isinstance(parameters["cutoff"], date):  # YAML reads an unquoted 2026-03-01 as a date: notebooks take text
        parameters["cutoff"] = parameters["cutoff"].isoformat()
    if parameters["signal_modules"] is None:  # `signal_modules:` with every entry commented out
        parameters["signal_modules"] = []
    check_parameters(parameters, f"parameters file {path}")
    return parameters


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_parameters(parameters: dict[str, Any], where: str = "parameters") -> None:
    """Refuse, before any notebook runs, parameter values no notebook can use (one line naming the parameter)."""
    from hsutils.panel import SEGMENT_COLUMNS
    from hsutils.snapshot import parse_utc

    def refuse(key: str, expected: str) -> None:
        raise InputError(f"{where}: {key} is {parameters[key]!r}; it must be {expected}")

    if parameters["cutoff"] is not None:
        try:
            parse_utc(str(parameters["cutoff"]))
        except ValueError:
            refuse("cutoff", "a date (YYYY-MM-DD), or null")
    for key in ("horizon_days", "n_boot", "seed"):
        value = parameters[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "horizon_days" else 0):
            refuse(key, "a whole number of days, at least 1" if key == "horizon_days" else "a whole number >= 0")
    if parameters["target_recall"] is not None and not (
        _is_number(parameters["target_recall"]) and 0 < parameters["target_recall"] <= 1
    ):
        refuse("target_recall", "a share above 0 and at most 1 (e.g. 0.8), or null")
    capacity = parameters["capacity_per_owner_per_week"]
    if capacity is not None and not (_is_number(capacity) and capacity > 0):
        refuse("capacity_per_owner_per_week", "a number of accounts above 0, or null")
    for key in ("save_rate_early", "save_rate_late"):
        if not (_is_number(parameters[key]) and 0 <= parameters[key] <= 1):
            refuse(key, "a share within 0..1 (e.g. 0.71)")
    if parameters["segment_column"] not in SEGMENT_COLUMNS:
        refuse("segment_column", f"one of the panel's segment columns ({', '.join(SEGMENT_COLUMNS)})")
    signals = parameters["signals"]
    if signals is not None and not (
        isinstance(signals, list) and signals and all(isinstance(name, str) and name for name in signals)
    ):
        refuse("signals", "a list of signal names, or null for all")
    if parameters["mapping"] is not None and not (isinstance(parameters["mapping"], str) and parameters["mapping"]):
        refuse("mapping", "the path of a mapping file, or null")
    modules = parameters["signal_modules"]
    if not (isinstance(modules, list) and all(isinstance(spec, str) and spec for spec in modules)):
        refuse("signal_modules", "a list of Python files (or module names) registering signals, or []")


def refuse_secret_values(parameters: dict[str, Any]) -> None:
    """Raise if any parameter value holds the HubSpot token of the environment."""
    token = os.environ.get("HUBSPOT_ACCESS_TOKEN")
    if token and any(token in json.dumps(value, default=str) for value in parameters.values()):
        raise InputError("a notebook parameter holds the HubSpot token; tokens come from the environment only")


def strip_for_readers(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without stderr streams (warnings, progress bars) and without cells tagged `remove-cell`."""
    reader_copy = copy.deepcopy(notebook)
    kept = []
    for cell in reader_copy.cells:
        if "remove-cell" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.get("name") == "stderr")]
        kept.append(cell)
    reader_copy.cells = kept
    return reader_copy


def page_title(notebook: nbformat.NotebookNode) -> str | None:
    """The first top-level Markdown heading of a notebook ('# ...'), written by a Markdown cell or shown by a cell's
    Markdown output; None without one."""
    for cell in notebook.cells:
        texts = [cell.source] if cell.cell_type == "markdown" else [
            output.get("data", {}).get("text/markdown", "") for output in cell.get("outputs", [])]
        for text in texts:
            text = "".join(text) if isinstance(text, list) else text
            heading = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
            if heading:
                return heading
    return None


def render_html(executed_notebook: Path, html_path: Path) -> Path:
    """Render an executed notebook to HTML without input cells, prompts or stderr output, titled by its first
    heading (else by the notebook's file name)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    notebook = strip_for_readers(nbformat.read(executed_notebook, as_version=4))
    title = page_title(notebook)
    if title:
        notebook.metadata["title"] = title
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": executed_notebook.stem}})
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def merge_metrics(folder: Path, period: str) -> dict[str, Any]:
    """Merge the notebooks' metric parts into one dict (deterministic: no wall-clock values)."""
    metrics: dict[str, Any] = {"period": period}
    for part in METRICS_PARTS:
        path = folder / f"{part}.json"
        if path.is_file():
            metrics[part] = json.loads(path.read_text(encoding="utf-8"))
    return metrics


def run_report(
    snapshot_dir: str | Path,
    period: str,
    out: str | Path = "reports",
    parameters_file: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
    progress: bool = True,
    signal_modules: Sequence[str | Path] = (),
) -> ReportResult:
    """Run every numbered notebook with papermill and render the report into `out/<period>/`.

    `signal_modules` (files or module names registering signals of the user's own) add to the parameters file's.
    With `progress`, a bar shows when standard error is a terminal (none in a scheduler's log).
    """
    from hsutils.signals import load_signal_modules, signal_module_spec
    from hsutils.snapshot import load_snapshot

    parse_period(period)
    parameters = load_parameters(parameters_file)
    snapshot_dir = Path(snapshot_dir).resolve()
    if parameters["mapping"] is not None:  # relative to where the command runs, not to the notebooks' folder
        parameters["mapping"] = str(Path(parameters["mapping"]).resolve())
    parameters["signal_modules"] = list(dict.fromkeys(  # files likewise: absolute, as parameters.yml records them
        signal_module_spec(spec) for spec in [*parameters["signal_modules"], *signal_modules]
    ))
    load_signal_modules(parameters["signal_modules"])  # a bad module is refused in one line before any notebook
    load_snapshot(snapshot_dir, mapping=parameters["mapping"])  # fail early, with one line, on a bad snapshot
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
    notebooks = sorted(notebooks_dir.glob(NOTEBOOK_PATTERN))
    if not notebooks:
        raise InputError(f"no numbered notebooks (NN-name.ipynb) in {notebooks_dir}")
    out = Path(out).resolve()
    final, staging, failed = out / period, out / f".{period}.partial", out / f"{period}.failed"
    with ExitStack() as held:
        try:
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(reports_folder_lock(out))
            restore_interrupted_swaps(out)
            shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed outright
            (staging / "notebooks").mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
        previous = find_previous_report(out, period)
        parameters.update(
            snapshot_dir=str(snapshot_dir),
            report_dir=str(staging),
            period=period,
            previous_report_dir=str(previous) if previous else None,
        )
        try:
            refuse_secret_values(parameters)
            (staging / "parameters.yml").write_text(
                yaml.safe_dump({k: v for k, v in parameters.items() if k not in RUN_PARAMETERS}, sort_keys=True),
                encoding="utf-8",
            )
            execute_notebooks(notebooks, parameters, staging, failed, progress)
        except InputError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except KeyboardInterrupt as exc:
            shutil.rmtree(staging, ignore_errors=True)
            kept = f"{final} is as it was" if final.exists() else "nothing was written"
            raise ReportInterrupted(getattr(exc, "signum", signal.SIGINT),
                                    f"{str(exc) or 'interrupted'}: {period} not reported; {kept}") from None

        metrics = merge_metrics(staging, period)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        backup = out / f".{period}.previous"
        shutil.rmtree(backup, ignore_errors=True)
        if final.exists():
            final.rename(backup)
        staging.rename(final)
        shutil.rmtree(backup, ignore_errors=True)
        shutil.rmtree(failed, ignore_errors=True)
    return ReportResult(folder=final, leadership_html=final / "leadership.html", metrics=metrics)


def execute_notebooks(notebooks: Sequence[Path], parameters: dict[str, Any], staging: Path, failed: Path,
                      progress: bool) -> None:
    """Run `notebooks` in order into `staging` (the executed notebook, its log and its HTML each).

    A notebook that fails moves `staging` to `failed` and raises ReportFailed with its one-line cause (the full
    traceback ends its log); one that meets bad input raises InputError; Ctrl-C or SIGTERM raises
    ReportInterrupted naming the notebook. Papermill shuts the kernel down in every case.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from hsutils.progress import progress_bar

    bar = progress_bar(notebooks, show=progress, leave=True, desc=f"report {parameters['period']}", unit="notebook")
    for notebook in bar:
        bar.set_postfix_str(notebook.stem)
        executed = staging / "notebooks" / notebook.name
        with open(executed.with_suffix(".log"), "w", encoding="utf-8") as log:
            try:
                papermill.execute_notebook(
                    str(notebook), str(executed), parameters=parameters, kernel_name=KERNEL_NAME,
                    progress_bar=False, cwd=str(staging), stdout_file=log, stderr_file=log,
                    kernel_manager_class=this_python_kernel(log),
                )
                leadership = notebook.name.startswith(LEADERSHIP_NOTEBOOK_PREFIX)
                render_html(executed, staging / ("leadership.html" if leadership else f"{notebook.stem}.html"))
                continue
            except PapermillExecutionError as exc:
                if exc.ename in input_error_names():  # bad input found by a notebook: a one-line refusal, exit 2
                    raise InputError(f"{parameters['period']} not reported: {exc.evalue}") from None
                cause, details = f"{exc.ename}: {exc.evalue}", exc.traceback
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", signal.SIGINT)
                raise ReportInterrupted(signum, f"stopped by {signal.Signals(signum).name} during {notebook.name}") \
                    from None
            except Exception as exc:  # the kernel died, would not start, the HTML could not be written, ...
                cause, details = f"{type(exc).__name__}: {exc}", traceback.format_exception(exc)
            trace = "\n".join(line.rstrip("\n") for line in details)
            log.write(f"\n{notebook.name} failed:\n{ANSI_ESCAPE.sub('', trace)}\n")
        shutil.rmtree(failed, ignore_errors=True)
        staging.rename(failed)
        raise ReportFailed(failed / "notebooks" / notebook.name, f"{notebook.name} failed: {one_line(cause)}")


def cli_report(args) -> int:
    """`hsutils report DIR --period P [--out reports/] [--params FILE] [--signal-module FILE ...]`.

    For a scheduler: exit 0 and a last line naming the leadership page; exit 1 (a notebook failed), 2 (bad input,
    or another run writing to the same folder), 130/143 (Ctrl-C/SIGTERM) and a last line saying why.
    """
    previous_handler = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        result = run_report(args.dir, args.period, out=args.out, parameters_file=args.params,
                            signal_modules=getattr(args, "signal_modules", None) or ())
    except ReportFailed as exc:
        print(f"hsutils report: the failed notebook and its log are in {exc.notebook.parent}", file=sys.stderr)
        print(f"hsutils report: error: {args.period} not reported: {exc}", file=sys.stderr)
        return 1
    except ReportInterrupted as exc:
        print(f"hsutils report: {exc}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    print(f"report written to {result.folder}")
    print(f"leadership report: {result.leadership_html}")
    return 0

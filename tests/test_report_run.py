"""The quarterly report as a scheduler runs it: a cron-like environment, interruptions, overlapping runs, failing
notebooks, the kernel. Small stand-in notebooks keep these fast; test_report.py runs the real ones."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_report import write_parameterised_notebook

from hsutils.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
# The command line with the notebooks of argv[1] in place of the repository's, as a scheduler would start it.
RUN_CLI = (
    "import sys; from pathlib import Path; import hsutils.report as report; "
    "report.default_notebooks_dir = lambda: Path(sys.argv[1]); "
    "from hsutils.cli import main; sys.exit(main(sys.argv[2:]))"
)


def start_cli(notebooks: Path, args: list[str], tmp_path: Path) -> subprocess.Popen:
    """`hsutils ARGS` in a cron-like environment: bare PATH, LANG=C, a HOME without Jupyter set-up, cwd elsewhere."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(exist_ok=True)
    cwd.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C", "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-c", RUN_CLI, str(notebooks), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished_report(folder: Path) -> Path:
    """A stand-in for a finished report folder (what find_previous_report looks for)."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"period": folder.name.strip(".").split(".")[0]}))
    (folder / "model.yml").write_text("signals: []\n")
    return folder


def test_a_run_stopped_by_sigterm_says_so_and_leaves_the_previous_report_and_no_staging(small_demo, tmp_path):
    """A scheduler's SIGTERM during a notebook: exit 143, one line naming the notebook, the kernel shut down, the
    period's previous report as it was and no staging folder (a snapshot path with spaces, run from elsewhere)."""
    snapshot = tmp_path / "portal snapshots" / "2026-12-31"
    shutil.copytree(small_demo, snapshot)
    notebooks = write_parameterised_notebook(
        tmp_path / "notebooks", "report_dir = None",
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(60)",
    )
    out = tmp_path / "reports"
    finished_report(out / "2026Q4")
    run = start_cli(notebooks, ["report", str(snapshot), "--period", "2026Q4", "--out", str(out)], tmp_path)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        f"hsutils report: stopped by SIGTERM during 01-check.ipynb: 2026Q4 not reported; {out / '2026Q4'} is as it was"
    )
    assert sorted(p.name for p in out.iterdir()) == ["2026Q4"]
    assert json.loads((out / "2026Q4" / "metrics.json").read_text()) == {"period": "2026Q4"}


def test_a_second_run_into_the_same_reports_folder_is_refused_while_the_first_runs(small_demo, tmp_path, capsys):
    notebooks = write_parameterised_notebook(
        tmp_path / "notebooks", "report_dir = None\nperiod = None",
        "import pathlib, time\n"
        "if period == '2026Q4':\n"
        "    (pathlib.Path(report_dir).parents[1] / 'started').touch()\n"
        "    for _ in range(600):\n"
        "        if (pathlib.Path(report_dir).parents[1] / 'release').exists():\n"
        "            break\n"
        "        time.sleep(0.1)",
    )
    out = tmp_path / "reports"
    first = start_cli(notebooks, ["report", str(small_demo), "--period", "2026Q4", "--out", str(out)], tmp_path)
    try:
        for _ in range(600):
            if (tmp_path / "started").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert (tmp_path / "started").exists(), first.communicate()[1]
        code = main(["report", str(small_demo), "--period", "2027Q1", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.strip().splitlines() == [
            f"hsutils report: error: another hsutils report is writing to {out}; run again when it has finished"
        ]
    finally:
        (tmp_path / "release").touch()
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert sorted(p.name for p in out.iterdir()) == ["2026Q4"]


def test_report_runs_in_this_python_whatever_kernel_jupyter_has_registered(small_demo, tmp_path, monkeypatch,
                                                                           capsys):
    """A kernel named hsutils in the user's Jupyter folders (another, since deleted environment, or installed with
    --user under a HOME cron does not have) does not decide where the notebooks run."""
    stale = tmp_path / "jupyter" / "kernels" / "hsutils"
    stale.mkdir(parents=True)
    (stale / "kernel.json").write_text(
        '{"argv": ["/opt/old-env/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], '
        '"display_name": "Python (hsutils)", "language": "python"}'
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    notebooks = write_parameterised_notebook(
        tmp_path / "notebooks", "report_dir = None",
        "import pathlib, sys, warnings\npathlib.Path(report_dir, 'python.txt').write_text(sys.executable)\n"
        "print('signals built')\nwarnings.warn('12 companies have no owner')",
    )
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    out = tmp_path / "reports"
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (out / "2026Q4" / "python.txt").read_text() == sys.executable
    assert captured.out.strip().splitlines()[-1] == f"leadership report: {out / '2026Q4' / 'leadership.html'}"
    log = (out / "2026Q4" / "notebooks" / "01-check.log").read_text()  # kept for the analyst
    assert "signals built" in log and "12 companies have no owner" in log


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("raise ValueError('no rows for segment scaled\\n(see the panel)')",
         "ValueError: no rows for segment scaled (see the panel)"),
        ("import os\nos._exit(1)", "DeadKernelError: Kernel died"),
    ],
)
def test_a_failing_notebook_is_named_with_its_one_line_cause_and_its_log_kept(code, cause, small_demo, tmp_path,
                                                                               monkeypatch, capsys):
    notebooks = write_parameterised_notebook(tmp_path / "notebooks", "report_dir = None", code)
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    out = tmp_path / "reports"
    assert main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    failed = out / "2026Q4.failed" / "notebooks"
    assert lines[-2:] == [
        f"hsutils report: the failed notebook and its log are in {failed}",
        f"hsutils report: error: 2026Q4 not reported: 01-check.ipynb failed: {cause}",
    ]
    assert "Traceback" not in "\n".join(lines)
    assert (failed / "01-check.ipynb").is_file()
    assert "01-check.ipynb failed:" in (failed / "01-check.log").read_text()  # with the whole traceback


def test_report_into_a_folder_it_cannot_write_is_one_line(small_demo, tmp_path, capsys):
    (tmp_path / "reports").write_text("a file, not a folder")
    code = main(["report", str(small_demo), "--period", "2026Q4", "--out", str(tmp_path / "reports" / "q")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"hsutils report: error: cannot write the report into {tmp_path / 'reports' / 'q'}: " \
                          "Not a directory"


def test_a_report_left_aside_by_a_run_stopped_mid_swap_is_put_back_and_compared_with(small_demo, tmp_path,
                                                                                     monkeypatch):
    """A run stopped between moving 2026Q3 aside and moving its new 2026Q3 in: the next run puts the finished
    2026Q3 back and finds it as the previous report."""
    out = tmp_path / "reports"
    finished_report(out / ".2026Q3.previous")
    notebooks = write_parameterised_notebook(
        tmp_path / "notebooks", "report_dir = None\nprevious_report_dir = None",
        "import pathlib\npathlib.Path(report_dir, 'previous.txt').write_text(str(previous_report_dir))",
    )
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)
    assert main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out)]) == 0
    assert (out / "2026Q4" / "previous.txt").read_text() == str(out / "2026Q3")
    assert sorted(p.name for p in out.iterdir()) == ["2026Q3", "2026Q4"]


def test_report_refuses_a_period_with_a_trailing_newline(small_demo, tmp_path, capsys):
    """`--period "$(cat period.txt)"` keeps no newline, but `--period "$PERIOD"` read from a file can: no folder
    named '2026Q4\\n'."""
    code = main(["report", str(small_demo), "--period", "2026Q4\n", "--out", str(tmp_path / "r")])
    assert code == 2 and "YYYYQn" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_report_into_a_read_only_folder_is_one_line(small_demo, tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    out.chmod(0o555)
    try:
        code = main(["report", str(small_demo), "--period", "2026Q4", "--out", str(out)])
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"hsutils report: error: cannot write the report into {out}: Permission denied"


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_report_passes_a_snapshot_path_with_spaces_as_one_argument():
    import shlex

    dry_run = subprocess.run(["make", "-n", "-W", "pyproject.toml", "report", "SNAPSHOT=data/snapshots/EU portal",
                              "PERIOD=2026Q4"], cwd=ROOT, capture_output=True, text=True, check=True)
    command = next(line for line in dry_run.stdout.splitlines() if "hsutils report" in line)
    assert shlex.split(command)[1:] == ["report", "data/snapshots/EU portal", "--period", "2026Q4", "--out", "reports"]


def test_environment_yml_installs_what_pyproject_requires_and_the_package():
    """Conda users get the same packages and versions as `make setup`, the package itself (`hsutils` on the
    PATH) and the kernel inside their env, as `make setup` puts it inside the venv."""
    import tomllib

    import yaml
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {Requirement(r).name: str(Requirement(r).specifier)
                for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]}
    text = (ROOT / "environment.yml").read_text()
    environment = yaml.safe_load(text)["dependencies"]
    pip = next(entry["pip"] for entry in environment if isinstance(entry, dict))
    entries = [e for e in environment if isinstance(e, str) and "=" not in e.split(">")[0]]  # not python=3.11
    listed = {Requirement(e).name: str(Requirement(e).specifier)
              for e in [*entries, *(e for e in pip if not e.startswith("-"))]}
    assert {name: listed.get(name) for name in required} == required
    assert "-e ." in pip
    assert "ipykernel install --sys-prefix --name hsutils" in text
    assert "ipykernel install --sys-prefix --name hsutils" in (ROOT / "Makefile").read_text()


def test_report_shows_its_progress_bar_on_a_terminal_only(small_demo, tmp_path, monkeypatch):
    """Run by cron, the report's bar filled the mail with redraws: a standard error that is no terminal gets none,
    a terminal still sees it."""
    notebooks = write_parameterised_notebook(tmp_path / "notebooks", "report_dir = None", "print('done')")
    monkeypatch.setattr("hsutils.report.default_notebooks_dir", lambda: notebooks)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shows in ((io.StringIO(), False), (Terminal(), True)):
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", stream)
            assert main(["report", str(small_demo), "--period", "2026Q4", "--out", str(tmp_path / "reports")]) == 0
        assert ("notebook/s" in stream.getvalue()) is shows, stream.getvalue()

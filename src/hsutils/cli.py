"""The `hsutils` command line.

Every subcommand is declared here and handled by a `cli_<command>(args) -> int` function in its stage module,
imported only when that command runs (so `hsutils --help` stays fast). Bad input raises InputError, which is
printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hsutils.errors import InputError

PACKAGE_DIR = Path(__file__).resolve().parent  # warnings raised in here are shown as one plain line
HANDLERS: dict[str, str] = {
    "demo-data": "hsutils.demo:cli_demo_data",
    "validate": "hsutils.validate:cli_validate",
    "panel": "hsutils.panel:cli_panel",
    "fit": "hsutils.model:cli_fit",
    "score": "hsutils.scores:cli_score",
    "evaluate": "hsutils.evaluate:cli_evaluate",
    "report": "hsutils.report:cli_report",
    "pull": "hsutils.hubspot.pull:cli_pull",
    "push": "hsutils.hubspot.push:cli_push",
    "rollback": "hsutils.hubspot.push:cli_rollback",
    "sandbox": "hsutils.hubspot.sandbox:cli_sandbox",
}


def add_signal_module_option(parser: argparse.ArgumentParser) -> None:
    """The repeatable --signal-module option of every command that builds a panel (args.signal_modules)."""
    parser.add_argument(
        "--signal-module", action="append", default=[], dest="signal_modules", metavar="FILE",
        help="Python file (or importable module) registering signals of your own, loaded first; repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsutils", description="Customer health scores fitted on, and validated against, real churn."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # --- snapshots -------------------------------------------------------------------------------------------
    p = sub.add_parser("demo-data", help="write the built-in demo portal as a canonical snapshot")
    p.add_argument("--out", required=True, help="new snapshot folder")
    p.add_argument("--companies", type=int, default=3000, help="number of companies (default 3000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="table file format")

    p = sub.add_parser("validate", help="check a snapshot folder against the canonical schema")
    p.add_argument("dir")
    p.add_argument("--mapping", help="YAML file mapping the portal's own values to canonical ones")

    # --- panel and model -------------------------------------------------------------------------------------
    p = sub.add_parser("panel", help="build the weekly point-in-time panel of signals and outcomes")
    p.add_argument("dir")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--signals", help="comma-separated signal names (default: all registered)")
    p.add_argument("--mapping", help="YAML file mapping the portal's own values to canonical ones")
    add_signal_module_option(p)

    p = sub.add_parser("fit", help="fit the health score on history and write the model file")
    p.add_argument("dir")
    p.add_argument("--out", required=True, help="model file (.yml)")
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--cutoff", help="as-of date splitting training from held-out test (default: chosen from data)")
    p.add_argument("--signals", help="comma-separated signal names (default: all registered)")
    p.add_argument("--mapping", help="YAML file mapping the portal's own values to canonical ones")
    add_signal_module_option(p)

    p = sub.add_parser("score", help="score every current customer with a model file or preset")
    p.add_argument("dir")
    p.add_argument("--model", required=True, help="model file, or a preset name (seed, 40-30-30)")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    p.add_argument("--as-of", help="date to score at (default: the snapshot's latest week)")
    p.add_argument("--mapping", help="YAML file mapping the portal's own values to canonical ones")
    add_signal_module_option(p)

    p = sub.add_parser("evaluate", help="judge a model on held-out time and write metrics JSON")
    p.add_argument("dir")
    p.add_argument("--model", required=True, help="model file, or a preset name (seed, 40-30-30)")
    p.add_argument("--out", required=True, help="metrics file (.json)")
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--cutoff", help="first as-of date of the test period")
    p.add_argument("--mapping", help="YAML file mapping the portal's own values to canonical ones")
    add_signal_module_option(p)

    p = sub.add_parser("report", help="run the notebooks with papermill and render the recalibration report")
    p.add_argument("dir")
    p.add_argument("--period", required=True, help="report period, e.g. 2026Q4")
    p.add_argument("--out", default="reports", help="reports folder (default reports/)")
    p.add_argument("--params", help="YAML file of notebook parameters")
    add_signal_module_option(p)

    # --- HubSpot ---------------------------------------------------------------------------------------------
    p = sub.add_parser("pull", help="pull a HubSpot portal into a new snapshot (token from HUBSPOT_ACCESS_TOKEN)")
    p.add_argument("--out", required=True, help="new snapshot folder")
    p.add_argument("--host", default="https://api.hubapi.com", help="API base URL")
    p.add_argument("--since", help="only activity on or after this date")
    p.add_argument("--config", help="YAML portal configuration (roles, pipelines, stages, properties)")
    p.add_argument("--usage", help="product usage event export (CSV or parquet); default: usage.file in --config, "
                   "else none (usage_events empty, usage signals unknown)")
    p.add_argument("--rate", default="pro", help="client-side limit: starter (100), pro/enterprise (190) "
                   "requests per 10 s, a number, or off (default pro)")
    p.add_argument("--checkpoint", help="checkpoint folder for resuming (default: <out>.checkpoint beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("push", help="write scores and weights to HubSpot company properties (dry run unless --apply)")
    p.add_argument("--model", required=True, help="model file")
    p.add_argument("--scores", required=True, help="scores file from `hsutils score`")
    p.add_argument("--apply", action="store_true", help="really write (default: show what would change)")
    p.add_argument("--host", default="https://api.hubapi.com", help="API base URL")
    p.add_argument("--config", help="YAML portal configuration (push.group, push.prefix)")
    p.add_argument("--audit", help="audit file to write (default: hubspot-push-audit-<version>-<time>.csv); "
                   "an existing one is continued, e.g. when resuming a push")
    p.add_argument("--rate", default="pro", help="starter, pro, enterprise, requests per 10 s, or off")

    p = sub.add_parser("rollback", help="restore the old values recorded in a push audit file")
    p.add_argument("audit", help="audit file written by `hsutils push --apply`")
    p.add_argument("--apply", action="store_true", help="really write (default: show what would change)")
    p.add_argument("--host", default="https://api.hubapi.com", help="API base URL")
    p.add_argument("--config", help="YAML portal configuration (push.group, push.prefix)")
    p.add_argument("--rate", default="pro", help="starter, pro, enterprise, requests per 10 s, or off")

    p = sub.add_parser("sandbox", help="serve a local HubSpot stand-in on loopback for demos and tests")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--snapshot", help="snapshot folder to seed the stand-in from")
    p.add_argument("--config", help="YAML portal configuration used to seed the stand-in")
    p.add_argument("--rate", type=int, help="answer 429 above this many requests per 10 s (default: no limit)")
    p.add_argument("--faults", help='inject faults, e.g. "429=0.2,500=0.02,slow=0.01,207=0.1,seed=3"')
    p.add_argument("--pull-to", help="demo: seed from --snapshot, pull into this new folder, stop (no server left)")
    p.add_argument("--model", help="with --pull-to: model file for a dry-run push")
    p.add_argument("--scores", help="with --pull-to: scores file for a dry-run push")
    return parser


def resolve_handler(command: str):
    """Import and return the `cli_*` function that handles `command`."""
    module_name, func_name = HANDLERS[command].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hsutils` console script."""
    args = build_parser().parse_args(argv)
    default_show = warnings.showwarning
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:  # the product's own warnings as one plain line, each once
        if Path(filename).resolve().is_relative_to(PACKAGE_DIR):  # hsutils and its subpackages (hubspot)
            if str(message) not in shown:
                shown.add(str(message))
                print(f"hsutils {args.command}: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            if getattr(args, "signal_modules", None):  # the user's own signals, registered before the command runs
                from hsutils.signals import load_signal_modules

                load_signal_modules(args.signal_modules)
            return int(resolve_handler(args.command)(args) or 0)
    except InputError as exc:
        print(f"hsutils {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"hsutils {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

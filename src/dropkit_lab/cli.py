"""The ``dropkit`` command: ``list``, ``run EXPERIMENT``, ``report OUT_DIR``, ``--version``.

Torch-free until ``run`` or ``report`` needs it, so that ``--help``, ``--version``, ``list`` and
every argument check answer at once: importing :mod:`dropkit` imports torch (seconds). Arguments
(experiment, profile, device, seeds, workers, output folder) are checked before anything is
imported or trained; a mistyped experiment or profile name gets a "did you mean".

Errors: dropkit's own user-facing errors (an unusable ``--out``, a held lock, missing or corrupt
data, a device that is not there) print one line and exit 2; a worker process that died, one line
and exit 1; Ctrl-C / SIGTERM / SIGHUP print one line and exit 130 / 143 / 129; anything else is a
bug: a short message that says so and where to report it, and with ``--debug`` the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import re
import sys
import warnings

from dropkit_lab.catalogue import EXPERIMENTS, estimate, measured_speeds
from dropkit_lab.environment import DEPRECATED_CACHE, passive_wait_environment
from dropkit_lab.text import duration, plural

__all__ = ["main"]

PROFILES_HELP = (
    "smoke: a pipeline check in seconds, its numbers mean nothing; quick: minutes on 2 cores, "
    "shows the paper's effect; paper: the published recipe, hours to days; hinton2012-mnist "
    "also has full (all 60,000 images, 250 epochs)"
)
DEVICES = "cpu, cuda or cuda:N"
BUG_REPORT = (
    "this is a bug in dropkit: please report it on the dropkit issue tracker with the command "
    "line and the output of the same command with --debug"
)
#: The experiments extra: module to import -> the distribution it comes from.
EXPERIMENTS_EXTRA = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "tqdm": "tqdm"}


def _version() -> str:
    try:
        return importlib.metadata.version("dropkit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree: ask the package
        import dropkit

        return dropkit.__version__


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"dropkit {_version()}")
        parser.exit()


def _device(value: str) -> str:
    if re.fullmatch(r"cpu|cuda(:\d+)?", value):
        return value
    raise argparse.ArgumentTypeError(f"invalid device {value!r}; allowed: {DEVICES}")


def _positive(name: str):
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {value!r}")
        return n

    return parse


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _experiment(value: str) -> str:
    if value in EXPERIMENTS:
        return value
    raise argparse.ArgumentTypeError(
        f"unknown experiment {value!r}{_suggest(value, EXPERIMENTS)} "
        f"(choose from {', '.join(EXPERIMENTS)}; `dropkit list` describes them)"
    )


def _out(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "--out is empty: name a folder for the results (default: dropkit-runs)"
        )
    return value


def experiments_help() -> str:
    """The experiments, their profiles and what each costs at the default seeds here."""
    speeds = measured_speeds()
    lines = ["experiments and the time of each profile at its default seeds, on one worker:"]
    for name, entry in EXPERIMENTS.items():
        costs = ", ".join(
            f"{p} {duration(*estimate(work, size, speeds))} ({plural(runs, 'run')})"
            for p, (runs, work, size) in entry.profiles.items()
        )
        lines.append(f"  {name}: {entry.title}")
        lines.append(f"      {costs}")
    sources = []
    for size, nets in (("small", "small nets"), ("large", "MNIST-sized nets")):
        if size in speeds:
            sources.append(f"{nets}: the speed earlier runs measured here, ± its spread")
        else:
            sources.append(
                f"{nets}: a reference 2-core machine's speed, ± half (not measured here yet)"
            )
    lines.append(
        f"(training and measuring time, estimated for {'; '.join(sources)}; start-up takes "
        "seconds more, and more --workers on more cores take less time)"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropkit", description="Re-run the dropout papers' experiments and report."
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser(
        "run",
        help="run an experiment (finished runs are skipped; a stopped run resumes)",
        description="Train an experiment's runs and print its summary. Finished runs are "
        "skipped and a stopped run resumes from its last epoch: after Ctrl-C, the same command "
        "carries on.",
        epilog=experiments_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("experiment", type=_experiment, metavar="EXPERIMENT")
    run.add_argument("--profile", default="quick", help=f"{PROFILES_HELP} (default: %(default)s)")
    run.add_argument(
        "--seeds", type=_positive("--seeds"), default=None, help="seeds per configuration"
    )
    run.add_argument(
        "--data-dir",
        default=None,
        help="MNIST folder (default: $DROPKIT_DATA, else ~/.cache/dropkit, where it is "
        "downloaded to)",
    )
    run.add_argument(
        "--out", type=_out, default="dropkit-runs", help="output folder (default: %(default)s)"
    )
    run.add_argument("--device", type=_device, default="cpu", help=f"{DEVICES} (default: cpu)")
    run.add_argument(
        "--workers", type=_positive("--workers"), default=1, help="parallel worker processes"
    )
    run.add_argument(
        "--ensemble",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train the runs that share a network shape (e.g. one experiment's configurations "
        "and seeds) as one stacked model in this process, with every core: each run's result "
        "is the one it gets alone with the same thread count, bit for bit; runs that cannot be "
        "stacked (BatchNorm, DropConnect, Gaussian dropout) train as without it, in --workers "
        "(default: --no-ensemble; docs/experiments.md has the measured speed)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    report = sub.add_parser("report", help="write OUT_DIR/report.md with tables and plots")
    report.add_argument("out_dir")
    return parser


def _missing_extra() -> list[str]:
    missing = []
    for module, dist in EXPERIMENTS_EXTRA.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    return missing


def _error(text: str) -> int:
    print(f"dropkit: error: {text}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    # The old cache variable's warning reaches the user (DeprecationWarnings are hidden by default).
    warnings.filterwarnings(
        "default", message=re.escape(DEPRECATED_CACHE), category=DeprecationWarning
    )
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, entry in EXPERIMENTS.items():
            print(f"{name:24s} {entry.title}")
        return 0
    if args.command == "run" and args.profile not in EXPERIMENTS[args.experiment].profiles:
        profiles = EXPERIMENTS[args.experiment].profiles
        parser.error(
            f"--profile {args.profile!r} is not one of {args.experiment}'s: "
            f"{', '.join(profiles)}{_suggest(args.profile, profiles)}"
        )
    missing = _missing_extra()
    if missing:
        return _error(
            f"`dropkit {args.command}` needs the experiments extra (missing: "
            f"{', '.join(missing)}): pip install 'dropkit[experiments]'"
        )
    try:
        return _run(args) if args.command == "run" else _report(args)
    except KeyboardInterrupt as exc:
        from dropkit_lab.experiments.runner import Interrupted

        if isinstance(exc, Interrupted):
            print(f"dropkit: {exc}", file=sys.stderr)
            return exc.exit_code
        print("dropkit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _user_error(exc):
            print(f"dropkit: error: {exc}", file=sys.stderr)
            return getattr(exc, "exit_code", 2)
        if args.debug:
            raise
        print(f"dropkit: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"dropkit: {BUG_REPORT}", file=sys.stderr)
        return 1


def _user_error(exc: Exception) -> bool:
    """dropkit's own errors meant for the user (everything else is a bug)."""
    from dropkit_lab.data import CorruptFileError, DatasetNotFoundError, DownloadError
    from dropkit_lab.experiments.runner import RunnerError

    return isinstance(exc, (RunnerError, DatasetNotFoundError, CorruptFileError, DownloadError))


def _run(args) -> int:
    passive_wait_environment()  # before torch starts its thread pool (and for the workers)
    from dropkit_lab.experiments import run_experiment

    summary = run_experiment(
        args.experiment,
        args.profile,
        seeds=args.seeds,
        data_dir=args.data_dir,
        out=args.out,
        device=args.device,
        workers=args.workers,
        quiet=args.quiet,
        ensemble=args.ensemble,
    )
    print(
        f"\nresults in {args.out}/{summary['experiment']}/{summary['profile']}; "
        f"`dropkit report {args.out}` writes the Markdown report"
    )
    return 0


def _report(args) -> int:
    from dropkit_lab.report import write_report

    try:
        path = write_report(args.out_dir)
    except FileNotFoundError as exc:
        return _error(str(exc))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

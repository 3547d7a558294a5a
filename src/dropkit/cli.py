"""The ``dropkit`` command: ``list``, ``run EXPERIMENT``, ``report OUT_DIR``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropkit", description="Re-run the dropout papers' experiments and report."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run an experiment (finished runs are skipped)")
    run.add_argument("experiment")
    run.add_argument(
        "--profile",
        default="quick",
        help="smoke, quick or paper; hinton2012-mnist also has full (default: %(default)s)",
    )
    run.add_argument("--seeds", type=int, default=None, help="seeds per configuration")
    run.add_argument("--data-dir", default=None, help="MNIST folder (default: $DROPKIT_DATA)")
    run.add_argument("--out", default="dropkit-runs", help="output folder (default: %(default)s)")
    run.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    run.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    run.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    report = sub.add_parser("report", help="write OUT_DIR/report.md with tables and plots")
    report.add_argument("out_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        from dropkit.experiments import list_experiments

        for e in list_experiments():
            print(f"{e.name:24s} {e.title}")
        return 0
    if args.command == "run":
        from dropkit.data import DatasetNotFoundError
        from dropkit.experiments import run_experiment

        try:
            summary = run_experiment(
                args.experiment,
                args.profile,
                seeds=args.seeds,
                data_dir=args.data_dir,
                out=args.out,
                device=args.device,
                workers=args.workers,
                quiet=args.quiet,
            )
        except (KeyError, ValueError, RuntimeError, DatasetNotFoundError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            print(f"dropkit: error: {message}", file=sys.stderr)
            return 2
        print(
            f"\nresults in {args.out}/{summary['experiment']}/{summary['profile']}; "
            f"`dropkit report {args.out}` writes the Markdown report"
        )
        return 0
    from dropkit.report import write_report

    try:
        path = write_report(args.out_dir)
    except FileNotFoundError as exc:
        print(f"dropkit: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

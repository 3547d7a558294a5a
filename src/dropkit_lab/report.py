"""Reports of experiment results: plain-text tables for the terminal, a Markdown report with PNG
plots for a whole output folder (``dropkit report OUT_DIR``).

A summary (``summary.json``, written by :func:`dropkit_lab.experiments.run_experiment`) holds
``tables`` (``title``, ``columns``, ``rows``, optional ``note``), ``plots`` (``name``, ``title``,
``xlabel``, ``ylabel``, optional ``xscale`` and ``xticklabels``, ``series`` of
``label``/``x``/``y``/optional ``yerr``, or ``kind: "hline"`` for a horizontal line; a line
labelled ``paper: G`` takes the colour of series ``G``), ``images`` (``name``, ``title``, optional
``xlabel``, ``tiles``: a list of flat images, ``tile_shape``),
``checks`` (``claim``, ``holds``, ``detail``), ``notes``, ``comparable`` (False: the profile's
numbers cannot be set against the paper's; None: there are no published numbers) and
``pipeline_check`` (True for the smoke profile: its numbers mean nothing). Every summary carries
a checksum (:mod:`dropkit_lab.engine.jsonio`); one that fails it, or cannot be read, is named in the
report and on stderr with the command that rewrites it, and the other summaries are reported.
The run files beside each summary (``runs/*.json``) are verified too, and checked against the
checksums the summary was computed from: a section whose summary or runs are not verified says so,
naming the files. The checksums guard against accidents (a truncated copy, a stray edit), not
against someone who means to forge a result.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from dropkit_lab.engine.jsonio import DamagedFileError, UncheckedFileError, atomic_open, read_record

__all__ = [
    "find_summaries",
    "render_markdown",
    "render_summary_text",
    "render_table_text",
    "write_report",
]

PROFILE_ORDER = {"smoke": 0, "quick": 1, "full": 2, "paper": 3}
SUMMARY_KEYS = ("experiment", "title", "paper", "profile", "runs", "seeds", "train_seconds_total")
PIPELINE_CHECK = (
    "SMOKE PROFILE: a pipeline check on a tiny subset for a few epochs; its numbers mean "
    "nothing and its claims are not judged (run --profile quick for results)"
)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_table_text(table: dict) -> str:
    rows = [[_cell(c) for c in row] for row in table["rows"]]
    columns = [str(c) for c in table["columns"]]
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    line = "  ".join("-" * w for w in widths)
    out = [table["title"], line, "  ".join(c.ljust(w) for c, w in zip(columns, widths)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    out.append(line)
    if table.get("note"):
        out.append(table["note"])
    return "\n".join(out)


def _check_mark(holds, summary: dict) -> str:
    if summary.get("pipeline_check"):
        return "not judged (smoke)"
    return {True: "yes", False: "NO", None: "n/a"}[holds]


def render_summary_text(summary: dict) -> str:
    parts = [f"\n== {summary['experiment']} [{summary['profile']}]: {summary['title']}"]
    if summary.get("pipeline_check"):
        parts.append(PIPELINE_CHECK)
    for table in summary.get("tables", []):
        parts.append(render_table_text(table))
    for c in summary.get("checks", []):
        parts.append(f"[{_check_mark(c['holds'], summary)}] {c['claim']}: {c['detail']}")
    for note in summary.get("notes", []):
        parts.append(f"note: {note}")
    return "\n".join(parts)


def _md_table(table: dict) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"**{esc(table['title'])}**", ""]
    lines.append("| " + " | ".join(esc(str(c)) for c in table["columns"]) + " |")
    lines.append("|" + "---|" * len(table["columns"]))
    for row in table["rows"]:
        lines.append("| " + " | ".join(esc(_cell(c)) for c in row) + " |")
    if table.get("note"):
        lines += ["", f"_{esc(table['note'])}_"]
    return "\n".join(lines)


def _plot(plot: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = _figure(plot)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _figure(plot: dict):
    """The figure of one plot: curves with distinct markers and line styles, a band of ± one
    standard deviation where there is one, integer ticks on an epoch axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    colors: dict[str, str] = {}
    curves = sum(s.get("kind") != "hline" for s in plot["series"])
    index = 0
    for series in plot["series"]:
        x, y = series["x"], series["y"]
        if series.get("kind") == "hline":
            # A paper line "paper: G" takes the colour of G's curve.
            match = colors.get(series["label"].removeprefix("paper: "), "grey")
            ax.axhline(y[0], linestyle="--", color=match, label=series["label"])
            continue
        style = _curve_style(index, curves, len(x))
        index += 1
        line = ax.plot(x, y, label=series["label"], **style)[0]
        colors[series["label"]] = line.get_color()
        yerr = series.get("yerr")
        if yerr is not None:  # a band, not one error bar per point
            low = [v - e for v, e in zip(y, yerr)]
            high = [v + e for v, e in zip(y, yerr)]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    if plot.get("xlabel") == "epoch" or plot.get("integer_x"):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if plot.get("xticklabels"):
        ax.set_xticks(range(len(plot["xticklabels"])))
        ax.set_xticklabels(plot["xticklabels"], rotation=30, ha="right", fontsize=8)
    ax.set_title(plot["title"])
    ax.set_xlabel(plot["xlabel"])
    ax.set_ylabel(plot["ylabel"])
    if plot.get("xscale"):
        ax.set_xscale(plot["xscale"])
        if plot["xscale"] == "log":
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks([x for s in plot["series"] if s.get("kind") != "hline" for x in s["x"]])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: Curves that coincide stay distinguishable: each has its own marker, line style and marker size
#: (hollow markers of decreasing size nest), and with many points their markers are staggered.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")


def _curve_style(index: int, curves: int, points: int) -> dict:
    style = {
        "marker": _MARKERS[index % len(_MARKERS)],
        "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
        "markersize": max(3.0, 10.0 - 2.5 * index),
        "markerfacecolor": "none",
        "linewidth": 1.5,
    }
    if points > 20:
        step = max(1, points // 10)
        style["markevery"] = ((index * step) // max(curves, 1) % step, step)
    return style


def _image_grid(image: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tiles = np.asarray(image["tiles"], dtype=np.float32)
    h, w = image["tile_shape"]
    cols = int(math.ceil(math.sqrt(len(tiles))))
    rows = int(math.ceil(len(tiles) / cols))
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1), dtype=np.float32)
    for i, tile in enumerate(tiles):
        t = tile.reshape(h, w)
        t = (t - t.min()) / (t.max() - t.min() + 1e-12)
        r, c = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = t
    # About three screen pixels per weight, so a 28x28 feature is readable.
    size = max(3.0, grid.shape[1] * 3 / 100)
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1] + 0.8), dpi=100)
    ax.imshow(grid, cmap="gray", interpolation="nearest")
    ax.set_title(image["title"])
    ax.set_xlabel(image.get("xlabel", f"{len(tiles)} tiles of {h}x{w}, each scaled to its range"))
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def find_summaries(out_dir: str | os.PathLike) -> list[Path]:
    """Every ``summary.json`` below ``out_dir`` (experiment folders, then profiles)."""
    paths = sorted(Path(out_dir).rglob("summary.json"))
    return sorted(paths, key=lambda p: (p.parent.parent.name, PROFILE_ORDER.get(p.parent.name, 9)))


def render_markdown(summary: dict, plot_dir: Path, rel_to: Path) -> str:
    """One experiment's section; its PNGs are written into ``plot_dir``."""
    lines = [f"## {summary['experiment']} ({summary['profile']} profile)", "", summary["title"], ""]
    if summary.get("pipeline_check"):
        lines += [f"**{PIPELINE_CHECK}.**", ""]
    lines.append(f"Paper: {summary['paper']}.")
    lines.append(
        f"Runs: {summary['runs']}, seeds per configuration: {summary['seeds']}, total training "
        f"time {summary['train_seconds_total']:.0f} s."
    )
    if summary.get("comparable") is False and summary["profile"] != "paper":
        lines.append(
            "**Not comparable with the paper's numbers**: this profile trains a smaller budget "
            "(fewer epochs and/or examples, see the notes); compare the *direction* of the effects."
        )
    lines.append("")
    if summary.get("preamble"):
        lines += [_md_table(summary["preamble"]), ""]
    for table in summary.get("tables", []):
        lines += [_md_table(table), ""]
    if summary.get("checks"):
        lines.append("| paper's claim | holds here | measured |")
        lines.append("|---|---|---|")
        for c in summary["checks"]:
            lines.append(f"| {c['claim']} | {_check_mark(c['holds'], summary)} | {c['detail']} |")
        lines.append("")
    visuals = [("plot", p) for p in summary.get("plots", [])]
    visuals += [("image", i) for i in summary.get("images", [])]
    for kind, item in visuals:
        name = f"{summary['experiment']}-{summary['profile']}-{item['name']}.png"
        path = plot_dir / name
        (_plot if kind == "plot" else _image_grid)(item, path)
        lines.append(f"![{item['title']}]({path.relative_to(rel_to).as_posix()})")
        lines.append("")
    for note in summary.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


def unverified_runs(summary_path: Path, summary: dict) -> list[str]:
    """The run files beside ``summary_path`` that cannot be trusted, each with the reason: no
    checksum, a failed one, unreadable, or not the file the summary was computed from."""
    from dropkit_lab.engine.jsonio import read_record

    problems = []
    runs = summary_path.parent / "runs"
    expected = summary.get("run_sha256")
    expected = expected if isinstance(expected, dict) else None
    seen = set()
    for path in sorted(runs.glob("*.json")) if runs.is_dir() else []:
        seen.add(path.stem)
        try:
            record = read_record(path)
        except UncheckedFileError:
            problems.append(f"{path} (no checksum)")
            continue
        except DamagedFileError as exc:
            problems.append(f"{path} ({exc.reason})")
            continue
        if (
            expected is not None
            and path.stem in expected
            and expected[path.stem] != record["sha256"]
        ):
            problems.append(f"{path} (not the file the summary was computed from)")
    if expected is not None:
        problems += [f"{runs / name}.json (missing)" for name in sorted(set(expected) - seen)]
    return problems


def _rerun_hint(path: Path, out_dir: Path) -> str:
    profile, experiment = path.parent.name, path.parent.parent.name
    return f"`dropkit run {experiment} --profile {profile} --out {out_dir}` rewrites it"


def write_report(out_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write ``<out_dir>/report.md`` (and ``<out_dir>/plots/*.png``) from every summary found.

    A summary that cannot be read or fails its checksum is named (in the report and on stderr)
    and skipped; the others are reported. A summary without a checksum, or whose run files are
    not verified (:func:`unverified_runs`), is reported marked unverified, the files named."""
    out_dir = Path(out_dir)
    summaries = find_summaries(out_dir)
    if not summaries:
        raise FileNotFoundError(f"no summary.json under {out_dir}: run `dropkit run` first")
    output = Path(output) if output is not None else out_dir / "report.md"
    plot_dir = output.parent / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    sections = ["# dropkit experiment report", ""]
    sections.append(
        "Measured values are mean ± sample standard deviation over seeds; paper values are "
        "from the publication named in each section."
    )
    sections.append("")
    for path in summaries:
        note = None
        try:
            summary = read_record(path, SUMMARY_KEYS)
        except UncheckedFileError as exc:
            summary = exc.record
            note = f"_**Not verified**: {path} has no checksum (an older dropkit wrote it, or it "
            note += f"was edited); {_rerun_hint(path, out_dir)} with one._"
            print(f"dropkit report: {path}: no checksum, reported unverified", file=sys.stderr)
        except DamagedFileError as exc:
            message = f"skipped {path}: it {exc.reason}; {_rerun_hint(path, out_dir)}"
            print(f"dropkit report: {message}", file=sys.stderr)
            sections += [f"## {path.parent.parent.name} ({path.parent.name} profile)", "", message]
            sections.append("")
            continue
        problems = unverified_runs(path, summary)
        if problems:
            listed = "; ".join(problems)
            runs_note = (
                "_**Not verified**: the results above rest on run files that cannot be trusted: "
                f"{listed}; {_rerun_hint(path, out_dir)} from retrained runs._"
            )
            note = runs_note if note is None else f"{note}\n\n{runs_note}"
            for problem in problems:
                print(f"dropkit report: unverified run file {problem}", file=sys.stderr)
        section = render_markdown(summary, plot_dir, output.parent)
        if note is not None:
            head, _, rest = section.partition("\n\n")
            section = f"{head}\n\n{note}\n\n{rest}"
        sections.append(section)
    with atomic_open(output) as f:
        f.write("\n".join(sections))
    return output

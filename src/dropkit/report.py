"""Reports of experiment results: plain-text tables for the terminal, a Markdown report with PNG
plots for a whole output folder (``dropkit report OUT_DIR``).

A summary (``summary.json``, written by :func:`dropkit.experiments.run_experiment`) holds
``tables`` (``title``, ``columns``, ``rows``, optional ``note``), ``plots`` (``name``, ``title``,
``xlabel``, ``ylabel``, optional ``xscale``, ``series`` of ``label``/``x``/``y``/optional
``yerr``), ``images`` (``name``, ``title``, ``tiles``: a list of flat images, ``tile_shape``),
``checks`` (``claim``, ``holds``, ``detail``), ``notes`` and ``comparable`` (False: the profile's
numbers cannot be set against the paper's; None: there are no published numbers). Plots need
matplotlib; without it the report says so and keeps the tables.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from dropkit.engine.jsonio import read_json

__all__ = [
    "find_summaries",
    "render_markdown",
    "render_summary_text",
    "render_table_text",
    "write_report",
]

PROFILE_ORDER = {"smoke": 0, "quick": 1, "paper": 2}


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


def _check_mark(holds) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[holds]


def render_summary_text(summary: dict) -> str:
    parts = [f"\n== {summary['experiment']} [{summary['profile']}]: {summary['title']}"]
    for table in summary.get("tables", []):
        parts.append(render_table_text(table))
    for c in summary.get("checks", []):
        parts.append(f"[{_check_mark(c['holds'])}] {c['claim']}: {c['detail']}")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for series in plot["series"]:
        x, y = series["x"], series["y"]
        if series.get("kind") == "hline":
            ax.axhline(y[0], linestyle="--", color="grey", label=series["label"])
            continue
        yerr = series.get("yerr")
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=series["label"])
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
    fig.savefig(path)
    plt.close(fig)


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
    # Three screen pixels per weight, so a 28x28 feature is readable.
    plt.imsave(path, np.kron(grid, np.ones((3, 3), dtype=np.float32)), cmap="gray")


def find_summaries(out_dir: str | os.PathLike) -> list[Path]:
    """Every ``summary.json`` below ``out_dir`` (experiment folders, then profiles)."""
    paths = sorted(Path(out_dir).rglob("summary.json"))
    return sorted(paths, key=lambda p: (p.parent.parent.name, PROFILE_ORDER.get(p.parent.name, 9)))


def render_markdown(summary: dict, plot_dir: Path | None, rel_to: Path) -> str:
    """One experiment's section; PNGs are written into ``plot_dir`` (None: no plots)."""
    lines = [f"## {summary['experiment']} ({summary['profile']} profile)", "", summary["title"], ""]
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
            lines.append(f"| {c['claim']} | {_check_mark(c['holds'])} | {c['detail']} |")
        lines.append("")
    visuals = [("plot", p) for p in summary.get("plots", [])]
    visuals += [("image", i) for i in summary.get("images", [])]
    for kind, item in visuals:
        name = f"{summary['experiment']}-{summary['profile']}-{item['name']}.png"
        if plot_dir is None:
            lines.append(f"_(plot {item['title']!r} skipped: matplotlib is not installed)_")
            continue
        path = plot_dir / name
        (_plot if kind == "plot" else _image_grid)(item, path)
        lines.append(f"![{item['title']}]({path.relative_to(rel_to).as_posix()})")
        lines.append("")
    for note in summary.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


def write_report(out_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write ``<out_dir>/report.md`` (and ``<out_dir>/plots/*.png``) from every summary found."""
    out_dir = Path(out_dir)
    summaries = find_summaries(out_dir)
    if not summaries:
        raise FileNotFoundError(f"no summary.json under {out_dir}: run `dropkit run` first")
    output = Path(output) if output is not None else out_dir / "report.md"
    try:
        import matplotlib  # noqa: F401

        plot_dir: Path | None = output.parent / "plots"
        plot_dir.mkdir(parents=True, exist_ok=True)
    except ImportError:
        plot_dir = None
    sections = ["# dropkit experiment report", ""]
    sections.append(
        "Measured values are mean ± sample standard deviation over seeds; paper values are "
        "from the publication named in each section."
    )
    sections.append("")
    for path in summaries:
        sections.append(render_markdown(read_json(path), plot_dir, output.parent))
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text("\n".join(sections))
    os.replace(tmp, output)
    return output

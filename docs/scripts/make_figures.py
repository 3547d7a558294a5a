"""Draw the documentation's pictures of dropkit's masks with dropkit itself.

The MkDocs build runs this (``docs/scripts/hooks.py``) and adds the PNGs to the site without
writing them into ``docs/``; run it by hand to look at them::

    python docs/scripts/make_figures.py OUT_DIR [NAME ...]

Every figure uses a fixed seed, so the pictures are the same from build to build. The picture of
the random stream across backends *checks* what it shows: it raises if the reference and the fast
CPU backend draw different masks for the same seed, which fails the docs build.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.cbook
import matplotlib.pyplot as plt
import numpy as np
import torch

import dropkit
from dropkit import functional as DF
from dropkit.kernels import reference

SEED = 20121207  # one seed for every picture (arXiv:1207.0580 went up in July 2012)
RATES = (0.1, 0.3, 0.5, 0.7)
GRAY = "gray"

FIGURES: dict[str, Callable[[], plt.Figure]] = {}


def figure(name: str) -> Callable[[Callable[[], plt.Figure]], Callable[[], plt.Figure]]:
    def register(fn: Callable[[], plt.Figure]) -> Callable[[], plt.Figure]:
        FIGURES[name] = fn
        return fn

    return register


def photo(size: int = 128) -> torch.Tensor:
    """Grace Hopper's portrait (in matplotlib's sample data), ``(size, size)`` grey, in [0, 1]."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = plt.imread(f, format="jpg").astype(np.float32) / 255.0
    grey = torch.from_numpy(rgb.mean(axis=2))
    h, w = grey.shape
    side = min(h, w)
    grey = grey[(h - side) // 4 : (h - side) // 4 + side, (w - side) // 2 : (w - side) // 2 + side]
    out = torch.nn.functional.interpolate(grey[None, None], size=(size, size), mode="area")
    return out[0, 0].contiguous()


def feature_map(channels: int = 16, size: int = 48) -> torch.Tensor:
    """A ``(1, channels, size, size)`` map: the photo through a fixed random 5x5 conv and a ReLU."""
    g = torch.Generator().manual_seed(SEED)
    x = photo(size + 4)[None, None]
    w = torch.randn(channels, 1, 5, 5, generator=g)
    w -= w.mean(dim=(2, 3), keepdim=True)
    y = torch.relu(torch.nn.functional.conv2d(x, w))
    return y / y.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def mosaic(fmap: torch.Tensor, cols: int = 4, pad: int = 2) -> np.ndarray:
    """Tile the channels of a ``(C, H, W)`` map into one image, separated by NaN gutters."""
    c, h, w = fmap.shape
    rows = (c + cols - 1) // cols
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, dtype=np.float32)
    for k in range(c):
        r, q = divmod(k, cols)
        out[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = fmap[k].numpy()
    return out


def show(
    ax,
    img,
    title: str,
    *,
    cmap: str = GRAY,
    vmin=0.0,
    vmax=1.0,
    xlabel="x (pixel)",
    ylabel="y (pixel)",
    aspect="equal",
):
    data = img.numpy() if isinstance(img, torch.Tensor) else img
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect=aspect)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return im


def kept(y: torch.Tensor, x: torch.Tensor) -> float:
    """Fraction of the non-zero inputs that are non-zero in ``y``."""
    nz = x != 0
    return float((y[nz] != 0).float().mean())


@figure("overview")
def overview() -> plt.Figure:
    x = photo()
    img = x[None, None]
    fmap = torch.cat([img, img.flip(-1), img.flip(-2), img.flip(-1, -2)], dim=1)
    panels = [
        ("input", x),
        (
            "dropout p=0.3\n(classic mode: no rescaling)",
            DF.dropout(x, 0.3, mode="classic", seed=SEED),
        ),
        ("Gaussian dropout p=0.3", DF.gaussian_dropout(x, 0.3, seed=SEED)),
        (
            "broadcast dropout p=0.3\nnoise_shape=(1, W): columns",
            DF.broadcast_dropout(x, 0.3, noise_shape=(1, None), mode="classic", seed=SEED),
        ),
        (
            "DropBlock p=0.3, block 15\n(per-sample normalisation)",
            DF.drop_block2d(img, 0.3, 15, seed=SEED)[0, 0],
        ),
        ("Cutout size 48", DF.cutout(img, 48, seed=SEED)[0, 0]),
        ("channel dropout p=0.5 on 4\nflipped copies (channel 0 shown)", None),
        ("drop-path p=0.5 on a batch\nof 4 (sample 0 shown)", None),
    ]
    ch = DF.dropout2d(fmap, 0.5, mode="classic", seed=SEED + 1)[0]
    panels[6] = (panels[6][0], mosaic(ch, cols=2))
    dp = DF.drop_path(fmap.transpose(0, 1), 0.5, training=True, scale_by_keep=False, seed=SEED + 3)
    panels[7] = (panels[7][0], mosaic(dp[:, 0], cols=2))
    fig, axes = plt.subplots(2, 4, figsize=(13, 7), constrained_layout=True)
    for ax, (title, im) in zip(axes.flat, panels):
        show(ax, im, title, vmax=1.0)
    fig.suptitle(f"One photo through dropkit's methods (seed {SEED}; grey scale 0-1, clipped)")
    return fig


@figure("dropout")
def dropout_fig() -> plt.Figure:
    x = photo()
    fig, axes = plt.subplots(2, len(RATES) + 1, figsize=(14, 6), constrained_layout=True)
    show(axes[0, 0], x, "input")
    show(axes[1, 0], torch.ones_like(x), "mask of p=0 (all kept)")
    for k, p in enumerate(RATES, 1):
        y = DF.dropout(x, p, mode="classic", seed=SEED)
        show(axes[0, k], y, f"p={p}: kept {kept(y, x):.3f} (expect {1 - p:.1f})")
        inv = DF.dropout(x, p, seed=SEED)
        show(axes[1, k], (inv != 0).float(), f"p={p}: keep mask (white = kept)")
    fig.suptitle(
        "dropout: each pixel kept with probability 1-p (top: classic mode, no 1/(1-p) scaling; "
        f"seed {SEED})"
    )
    return fig


@figure("gaussian")
def gaussian_fig() -> plt.Figure:
    x = photo()
    fig, axes = plt.subplots(2, len(RATES) + 1, figsize=(14, 6.2), constrained_layout=True)
    show(axes[0, 0], x, "input")
    axes[1, 0].axis("off")
    for k, p in enumerate(RATES, 1):
        y = DF.gaussian_dropout(x, p, seed=SEED)
        show(axes[0, k], y.clamp(0, 1), f"p={p}: x*r, r~N(1, {p / (1 - p):.2f})")
        r = (y / x)[x > 0.05]
        ax = axes[1, k]
        ax.hist(r.numpy(), bins=80, range=(-3, 5), color="C0")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"p={p}: r mean {r.mean():.2f}, var {r.var():.2f}", fontsize=9)
        ax.set_xlabel("multiplier r = y / x", fontsize=8)
        ax.set_ylabel("pixels", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"Gaussian dropout: multiplicative N(1, p/(1-p)) noise (seed {SEED}; top clipped to 0-1)"
    )
    return fig


@figure("alpha")
def alpha_fig() -> plt.Figure:
    x = photo()
    z = (x - x.mean()) / x.std()  # a standardised (SELU-like) activation
    fmap = feature_map()
    fz = (fmap - fmap.mean()) / fmap.std()
    fig, axes = plt.subplots(2, len(RATES) + 1, figsize=(15, 7.4), constrained_layout=True)
    style = {"cmap": "RdBu_r", "vmin": -3, "vmax": 3}
    tiles = {"xlabel": "x (pixel), 4 channels per row", "ylabel": "y (pixel), 4 rows of channels"}
    im = show(axes[0, 0], z, f"standardised input\nmean {z.mean():.2f}, std {z.std():.2f}", **style)
    show(axes[1, 0], mosaic(fz[0]), "standardised 16-channel map", **style, **tiles)
    for k, p in enumerate(RATES, 1):
        y = DF.alpha_dropout(z, p, training=True, seed=SEED)
        title = f"alpha dropout p={p}\nmean {y.mean():.2f}, std {y.std():.2f}"
        show(axes[0, k], y, title, **style)
        f = DF.feature_alpha_dropout(fz, p, training=True, seed=SEED)
        title = f"feature alpha dropout p={p}\nmean {f.mean():.2f}, std {f.std():.2f}"
        show(axes[1, k], mosaic(f[0]), title, **style, **tiles)
    fig.colorbar(im, ax=axes, shrink=0.6, label="activation")
    fig.suptitle(
        "alpha dropout: dropped units go to the SELU saturation value, then an affine map keeps "
        f"mean 0 and variance 1 (top: per pixel; bottom: per channel; seed {SEED})"
    )
    return fig


@figure("channel")
def channel_fig() -> plt.Figure:
    fmap = feature_map()
    rates = (0.0, 0.25, 0.5)
    fig, axes = plt.subplots(
        2, 3, figsize=(12, 6.8), constrained_layout=True, gridspec_kw={"height_ratios": [1.6, 1]}
    )
    for k, p in enumerate(rates):
        y = DF.dropout2d(fmap, p, mode="classic", seed=SEED)[0] if p else fmap[0]
        dropped = int((y.flatten(1).abs().sum(1) == 0).sum())
        show(
            axes[0, k],
            mosaic(y),
            f"Dropout2d p={p}: {dropped} of 16 channels dropped",
            xlabel="x (pixel), 4 channels per row",
            ylabel="y (pixel), 4 rows of channels",
        )
        seq = torch.rand(1, 16, 64, generator=torch.Generator().manual_seed(SEED)) * 0.5 + 0.5
        y1 = DF.dropout1d(seq, p, mode="classic", seed=SEED)[0] if p else seq[0]
        show(
            axes[1, k],
            y1,
            f"Dropout1d p={p}: (N=1, C=16, L=64)",
            cmap="viridis",
            xlabel="position l",
            ylabel="channel c",
            aspect="auto",
        )
    fig.suptitle(
        "channel (spatial) dropout: a whole feature map is kept or dropped "
        f"(classic mode; top: a 16-channel map of the photo; seed {SEED})"
    )
    return fig


@figure("broadcast")
def broadcast_fig() -> plt.Figure:
    x = photo()
    shapes = [
        ((None, None), "noise_shape=(H, W): plain dropout"),
        ((None, 1), "noise_shape=(H, 1): whole rows"),
        ((1, None), "noise_shape=(1, W): whole columns"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.9), constrained_layout=True)
    show(axes[0], x, "input (H=W=128)")
    for ax, (shape, title) in zip(axes[1:], shapes):
        y = DF.broadcast_dropout(x, 0.5, noise_shape=shape, mode="classic", seed=SEED)
        show(ax, y, f"p=0.5, {title}")
    fig.suptitle(
        f"broadcast dropout: one mask of noise_shape, broadcast (classic mode; seed {SEED})"
    )
    return fig


@figure("locked")
def locked_fig() -> plt.Figure:
    t, c = 40, 32
    x = torch.ones(t, 1, c)
    plain = DF.dropout(x, 0.5, mode="classic", seed=SEED)[:, 0]
    locked = DF.locked_dropout(x, 0.5, mode="classic", seed=SEED)[:, 0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    show(
        axes[0],
        plain.T,
        "dropout p=0.5: a new mask at every step",
        xlabel="time step t",
        ylabel="feature c",
        cmap="viridis",
    )
    show(
        axes[1],
        locked.T,
        "LockedDropout p=0.5: one mask for the whole sequence",
        xlabel="time step t",
        ylabel="feature c",
        cmap="viridis",
    )
    fig.suptitle(
        f"locked (variational) dropout on a (T=40, N=1, C=32) sequence of ones (yellow = "
        f"kept; seed {SEED})"
    )
    return fig


@figure("embedding")
def embedding_fig() -> plt.Figure:
    g = torch.Generator().manual_seed(SEED)
    weight = torch.rand(10, 16, generator=g) * 0.5 + 0.5
    ids = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4])
    plain = DF.dropout(weight[ids], 0.3, seed=SEED)
    word = DF.embedding_dropout(ids, weight, 0.3, seed=SEED)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    vmax = float(max(plain.max(), word.max()))
    for ax, y, title in (
        (axes[0], plain, "dropout p=0.3 on the looked-up vectors"),
        (axes[1], word, "embedding_dropout p=0.3: whole word types"),
    ):
        show(
            ax,
            y.T,
            title,
            cmap="viridis",
            vmin=0,
            vmax=vmax,
            xlabel="token id at each position",
            ylabel="embedding dimension",
        )
        ax.set_xticks(range(len(ids)), [str(int(i)) for i in ids])
    fig.suptitle(
        "embedding dropout: a dropped word is dropped at every position it occurs "
        f"(seed {SEED}; black columns = dropped)"
    )
    return fig


@figure("drop_connect")
def drop_connect_fig() -> plt.Figure:
    g = torch.Generator().manual_seed(SEED)
    weight = torch.randn(24, 40, generator=g)
    eye = torch.eye(40)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), constrained_layout=True)
    im = show(
        axes[0],
        weight,
        "weight W (24 x 40)",
        cmap="RdBu_r",
        vmin=-2.5,
        vmax=2.5,
        xlabel="input feature",
        ylabel="output unit",
    )
    for ax, p in zip(axes[1:], (0.25, 0.5, 0.75)):
        # x = I makes the layer's output the masked weight itself: I (W * M)^T.
        wm = DF.drop_connect_linear(eye, weight, None, p, mode="classic", seed=SEED).T
        show(
            ax,
            wm,
            f"W * M, p={p}: kept {kept(wm, weight):.2f}",
            cmap="RdBu_r",
            vmin=-2.5,
            vmax=2.5,
            xlabel="input feature",
            ylabel="output unit",
        )
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(f"DropConnect: weights, not activations, are dropped (classic mode; seed {SEED})")
    return fig


@figure("drop_block")
def drop_block_fig() -> plt.Figure:
    x = photo()[None, None]
    sizes = (1, 5, 11, 21)
    rates = (0.1, 0.3)
    fig, axes = plt.subplots(len(rates), len(sizes), figsize=(13, 7), constrained_layout=True)
    for r, p in enumerate(rates):
        for k, bs in enumerate(sizes):
            y = DF.drop_block2d(x, p, bs, seed=SEED)
            shown = x[0, 0] * (y[0, 0] != 0)
            show(axes[r, k], shown, f"p={p}, block_size={bs}: dropped {1 - kept(y, x):.3f}")
    fig.suptitle(
        "DropBlock: the same drop rate in contiguous blocks (block 1 = dropout); "
        f"shown before the |M|/sum(M) rescaling (seed {SEED})"
    )
    return fig


@figure("cutout")
def cutout_fig() -> plt.Figure:
    x = photo()[None, None]
    cases = ((16, 1), (32, 1), (48, 1), (32, 3))
    fig, axes = plt.subplots(1, len(cases) + 1, figsize=(15, 3.6), constrained_layout=True)
    show(axes[0], x[0, 0], "input (128 x 128)")
    for ax, (size, holes) in zip(axes[1:], cases):
        y = DF.cutout(x, size, holes, fill=0.0, seed=SEED)
        show(ax, y[0, 0], f"size={size}, n_holes={holes}")
    fig.suptitle(
        f"Cutout: squares centred uniformly over the image, clipped at the border (seed {SEED})"
    )
    return fig


@figure("drop_path")
def drop_path_fig() -> plt.Figure:
    layers, batch, p_last = 12, 32, 0.5
    rates = DF.linear_decay_rates(p_last, layers)
    g = torch.Generator().manual_seed(SEED)
    h = torch.randn(batch, 64, generator=g)
    blocks = [torch.nn.Linear(64, 64) for _ in range(layers)]
    active = torch.zeros(batch, layers)
    for ell, (block, p) in enumerate(zip(blocks, rates)):
        branch = DF.drop_path(torch.tanh(block(h)), p, training=True, generator=g)
        active[:, ell] = (branch.abs().sum(1) != 0).float()
        h = h + branch  # a residual block: x + drop_path(f(x))
    fig, axes = plt.subplots(
        1, 2, figsize=(13, 4.6), constrained_layout=True, gridspec_kw={"width_ratios": [1.3, 1]}
    )
    show(
        axes[0],
        active.detach(),
        "residual branch kept (yellow) per sample and block",
        cmap="viridis",
        xlabel="residual block l (1 = first)",
        ylabel="sample in the batch",
        aspect="auto",
    )
    axes[0].set_xticks(range(layers), [str(i + 1) for i in range(layers)])
    ls = np.arange(1, layers + 1)
    axes[1].plot(ls, rates, "o-", label="drop rate p_l = l/L p_L (linear_decay_rates)")
    measured = 1 - active.mean(0).detach().numpy()
    axes[1].plot(ls, measured, "s--", label=f"dropped fraction in this batch of {batch}")
    axes[1].set_xlabel("residual block l")
    axes[1].set_ylabel("drop probability")
    axes[1].set_title(f"linear decay to p_L={p_last} over L={layers} blocks", fontsize=9)
    axes[1].legend(fontsize=8)
    axes[1].set_ylim(0, 1)
    fig.suptitle(
        f"drop-path (stochastic depth, per sample) on a 12-block residual stack (seed {SEED})"
    )
    return fig


@figure("join_drop")
def join_drop_fig() -> plt.Figure:
    batch, k = 24, 4
    # Branch i is the one-hot row e_i: the join's mean is non-zero exactly at the kept branches.
    branches = [torch.eye(k)[i].expand(batch, k) for i in range(k)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4), constrained_layout=True)
    for ax, p in zip(axes[:2], (0.15, 0.5)):
        keep = (DF.drop_branches(branches, p, seed=SEED) != 0).float()
        alive = int((keep.sum(1) > 0).sum())
        show(
            ax,
            keep.T,
            f"local drop p={p}: kept {keep.mean():.2f}; {alive}/{batch} samples alive",
            cmap="viridis",
            xlabel="sample in the batch",
            ylabel="branch (column) k",
            aspect="auto",
        )
    glob = (DF.drop_branches(branches, 0.15, mode="global", column=2) != 0).float()
    show(
        axes[2],
        glob.T,
        "global: one column (k=2) for the whole batch",
        cmap="viridis",
        xlabel="sample in the batch",
        ylabel="branch (column) k",
        aspect="auto",
    )
    for ax in axes:
        ax.set_yticks(range(k))
    fig.suptitle(
        "FractalNet join: branches kept (yellow) at a 4-branch join; at least one per "
        f"sample survives (seed {SEED})"
    )
    return fig


@figure("backends")
def backends_fig() -> plt.Figure:
    x = photo()[None, None].expand(1, 3, 128, 128).contiguous()
    threshold = dropkit.rng.keep_threshold(0.5)
    # The reference kernel (plain torch, the definition) beside the operators this process uses.
    ref = reference.apply_keep_mask(x[0, 0], SEED, 0, threshold, 2.0)
    fast = DF.dropout(x[0, 0], 0.5, seed=SEED)
    ref2d = reference.apply_keep_mask(x, SEED, 0, threshold, 2.0, mask_shape=(1, 3, 1, 1))
    if not (torch.equal(ref, fast) and torch.equal(ref2d, DF.dropout2d(x, 0.5, seed=SEED))):
        raise AssertionError("the reference and the compiled kernels drew different masks")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), constrained_layout=True)
    show(axes[0], (ref != 0).float(), "kernels.reference: keep mask")
    show(axes[1], (fast != 0).float(), f"dropkit::keep ({dropkit.backend()} kernels): keep mask")
    diff = (ref != fast).float()
    show(axes[2], diff, f"differing pixels: {int(diff.sum())} of {diff.numel()}", cmap="Reds")
    fig.suptitle(
        f"dropout p=0.5, seed {SEED}: the same mask from the reference and the operator\n"
        "(checked bit for bit, with dropout2d, while drawing this picture)"
    )
    return fig


@figure("mc_dropout")
def mc_dropout_fig() -> plt.Figure:
    from dropkit import mc

    g = torch.Generator().manual_seed(SEED)
    n = 200
    centres = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])
    labels = torch.arange(n) % 2
    points = centres[labels] + 0.6 * torch.randn(n, 2, generator=g)
    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 32),
        torch.nn.ReLU(),
        dropkit.nn.Dropout(0.5),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        dropkit.nn.Dropout(0.5),
        torch.nn.Linear(32, 2),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(points), labels).backward()
        opt.step()
    model.eval()
    side = torch.linspace(-6, 6, 41)
    gy, gx = torch.meshgrid(side, side, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    with torch.no_grad():
        pred = mc.mc_predict(model, grid, samples=30, seed=SEED)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    extent = (-6, 6, -6, 6)
    for ax, values, title, cmap in (
        (axes[0], pred.mean[:, 1], "predictive mean P(class 1)", "RdBu_r"),
        (axes[1], pred.mutual_information, "mutual information (BALD)", "magma"),
    ):
        im = ax.imshow(values.reshape(41, 41).numpy(), origin="lower", extent=extent, cmap=cmap)
        ax.scatter(
            points[:, 0],
            points[:, 1],
            c=labels,
            cmap="coolwarm",
            s=6,
            edgecolors="k",
            linewidths=0.2,
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("input x1")
        ax.set_ylabel("input x2")
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle(
        "Monte-Carlo dropout: 30 stochastic passes of a small MLP trained on two blobs "
        f"(seed {SEED})"
    )
    return fig


@figure("max_norm")
def max_norm_fig() -> plt.Figure:
    g = torch.Generator().manual_seed(SEED)
    layer = torch.nn.Linear(100, 60)
    with torch.no_grad():
        spread = torch.linspace(0.1, 0.6, 60)[:, None]
        layer.weight.copy_(torch.randn(60, 100, generator=g) * spread)
    before = layer.weight.norm(dim=1).detach().clone()
    dropkit.max_norm_(layer, 3.0)
    after = layer.weight.norm(dim=1).detach()
    fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
    units = np.arange(60)
    ax.plot(units, before.numpy(), "o", ms=3, label="before max_norm_")
    ax.plot(units, after.numpy(), "x", ms=4, label="after max_norm_(layer, 3.0)")
    ax.axhline(3.0, color="k", lw=0.8, ls="--", label="c = 3")
    ax.set_xlabel("output unit j (row of the weight)")
    ax.set_ylabel("incoming weight norm ||w_j||")
    ax.legend(fontsize=8)
    fig.suptitle("max-norm: rows longer than c are scaled back onto the ball, the rest untouched")
    return fig


#: The test-error curves of the one run of ``dropkit run hinton2012-mnist --profile full``
#: (extracted from its run files by ``docs/scripts/full_run_curves.py``).
FULL_RUN = Path(__file__).resolve().parent.parent / "data" / "hinton2012-full.json"


@figure("hinton_full")
def hinton_full_fig() -> plt.Figure:
    import json

    run = json.loads(FULL_RUN.read_text())
    fig, ax = plt.subplots(figsize=(8, 4.2), constrained_layout=True)
    for i, (group, curve) in enumerate(run["curves"].items()):
        epochs = [point[0] + 1 for point in curve]
        errors = [point[1] for point in curve]
        color = f"C{i}"
        ax.plot(epochs, errors, color=color, label=f"{group} (measured)")
        paper = run["paper"].get(group)
        if paper is not None:
            ax.axhline(paper, color=color, ls="--", lw=0.8, label=f"{group}: paper, 3000 epochs")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test errors out of 10,000")
    ax.set_ylim(80, 260)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"hinton2012-mnist, full profile: 60,000 images, {run['epochs']} epochs, one seed")
    return fig


def render(name: str) -> bytes:
    """The PNG bytes of figure ``name`` (a fixed seed: the same bytes on every build)."""
    torch.manual_seed(SEED)
    with torch.no_grad() if name != "mc_dropout" else contextlib.nullcontext():
        fig = FIGURES[name]()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0])
        print("usage: python docs/scripts/make_figures.py OUT_DIR [NAME ...]; names:", *FIGURES)
        return 2
    out = Path(argv[0])
    names = argv[1:] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(f"unknown figure(s) {unknown}; known: {list(FIGURES)}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        path = out / f"{name}.png"
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(render(name))
        tmp.replace(path)
        print(f"{path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

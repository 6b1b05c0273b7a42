"""Figures as self-contained ``data:image/png;base64`` URIs (Agg, no pyplot global state)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import matplotlib.lines
import matplotlib.patches
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from . import fmt

DPI = 144  # crisp on high-density laptop screens; the page scales figures to its width
SIDE_BY_SIDE_BACKENDS = 4  # the agreement heatmaps stack beyond this, so their labels fit
STYLE = {"axes.spines.top": False, "axes.spines.right": False, "font.size": 10}


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs):
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, **kwargs)
    return figure, axes


def _png_data_uri(buffer: io.BytesIO) -> str:
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return _png_data_uri(buffer)


def image_uri(image: np.ndarray) -> str:
    """One uint8 grayscale image as a PNG data URI, ink dark on white like a page (scaled by CSS)."""
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, cmap="gray_r", vmin=0, vmax=255, format="png")
    return _png_data_uri(buffer)


def _themed(function, style: str = "whitegrid"):
    def wrapper(*args, **kwargs):
        with sns.axes_style(style, STYLE), sns.plotting_context("notebook", font_scale=0.9):
            return function(*args, **kwargs)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


_seconds_axis = FuncFormatter(lambda value, _pos: fmt.duration(value, 2))


def _log_labels(axis, label) -> None:
    """A log axis labelled by ``label`` at powers of ten and, between them, at 2x and 5x."""

    def minor(value, _pos):
        leading = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
        return label(value) if np.isclose(leading, 2) or np.isclose(leading, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: label(value)))
    axis.set_minor_formatter(FuncFormatter(minor))


def _epoch_axis(ax, epochs: pd.Series) -> None:
    """Epochs are whole numbers: integer ticks only; a span of under three epochs gets half an
    epoch of margin either side, so one epoch is one tick under one point (not 0.945 ... 1.05)."""
    first, last = int(epochs.min()), int(epochs.max())
    if last - first < 2:
        ax.set_xlim(first - 0.5, last + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")


@_themed
def training_curves(metrics: pd.DataFrame) -> str:
    figure, (loss_ax, acc_ax) = _figure(10, 3.4, ncols=2)
    losses = metrics.melt(
        id_vars="epoch",
        value_vars=[c for c in ("train_loss", "test_loss") if c in metrics],
        var_name="split",
        value_name="loss",
    )
    losses["split"] = losses["split"].str.replace("_loss", "", regex=False)
    sns.lineplot(losses, x="epoch", y="loss", hue="split", marker="o", ax=loss_ax)
    loss_ax.set_title("Cross-entropy loss per epoch")
    accuracy = metrics["test_accuracy"].astype(float)
    acc_ax.plot(metrics["epoch"], accuracy * 100, marker="o", color="C2")
    acc_ax.set_title("Test accuracy per epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    for ax in (loss_ax, acc_ax):
        _epoch_axis(ax, metrics["epoch"])
    return to_data_uri(figure)


@_themed
def latency_distributions(latencies: pd.DataFrame, order: list[str]) -> str:
    """Box plot and ECDF of per-image latency per backend, both on a log scale."""
    figure, (box_ax, ecdf_ax) = _figure(10, 0.55 * len(order) + 2.4, ncols=2)
    palette = dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))
    groups = [latencies.loc[latencies["backend"] == name, "latency_s"].to_numpy() for name in order]
    boxes = box_ax.boxplot(
        groups,
        orientation="horizontal",
        whis=(1, 99),
        widths=0.6,
        patch_artist=True,
        tick_labels=order,
        flierprops={"markersize": 1.5, "alpha": 0.5},
        medianprops={"color": "black"},
    )
    for patch, name in zip(boxes["boxes"], order, strict=True):
        patch.set_facecolor(palette[name])
        patch.set_alpha(0.8)
    box_ax.set_xscale("log")
    box_ax.invert_yaxis()  # first backend on top, like the tables
    box_ax.set_title("Per-image latency (whiskers: p1–p99)")
    box_ax.set_xlabel("latency per image (log scale)")
    box_ax.set_ylabel("")
    sns.ecdfplot(
        latencies,
        x="latency_s",
        hue="backend",
        hue_order=order,
        palette=palette,
        log_scale=True,
        ax=ecdf_ax,
    )
    ecdf_ax.set_title("Cumulative share of images done within a latency")
    ecdf_ax.set_xlabel("latency per image (log scale)")
    ecdf_ax.set_ylabel("share of images")
    ecdf_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
    for ax in (box_ax, ecdf_ax):
        ax.xaxis.set_major_formatter(_seconds_axis)
    return to_data_uri(figure)


@_themed
def throughput_curves(throughput: pd.DataFrame, order: list[str]) -> str:
    figure, ax = _figure(7.5, 4.0)
    palette = dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))
    sns.lineplot(
        throughput,
        x="batch_size",
        y="images_per_s",
        hue="backend",
        hue_order=order,
        palette=palette,
        marker="o",
        ax=ax,
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted(throughput["batch_size"].unique())
    ax.set_xticks(sizes, [f"{int(s):,}" for s in sizes])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.set_xlabel("batch size (images per call, log scale)")
    ax.set_ylabel("images / s (log scale)")
    ax.set_title("Throughput against batch size")
    ax.legend(title=None, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return to_data_uri(figure)


@_themed
def bandwidth_curve(bandwidth: list[dict], caches: dict[str, int]) -> str:
    """Triad bandwidth against the arrays' total size (log-log), the cache sizes marked."""
    figure, ax = _figure(7.5, 3.6)
    sizes = [row["bytes"] for row in bandwidth]
    ax.plot(sizes, [row["gb_per_s"] for row in bandwidth], marker="o", color="C0")
    for level, size in caches.items():
        ax.axvline(size, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f" {level}", (size, 1), xycoords=("data", "axes fraction"), va="top")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt.kibibytes(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.set_xlabel("size of the three arrays (log scale)")
    ax.set_ylabel("GB/s (log scale)")
    ax.set_title("Triad bandwidth, one thread")
    return to_data_uri(figure)


@_themed
def job_timeline(jobs: list[dict], cores: int | None) -> str:
    """Jobs as bars (``row``, ``start``, ``end`` in seconds, ``rule``), one row per job running at
    once; a dotted line below the first ``cores`` rows."""
    rules = list(dict.fromkeys(job["rule"] for job in jobs))
    colors = dict(zip(rules, sns.color_palette("tab20", len(rules)), strict=True))
    rows = 1 + max(job["row"] for job in jobs)
    legend_rows = -(-len(rules) // 4)  # four names a row, below the plot
    figure, ax = _figure(9, 1.6 + 0.4 * max(rows, cores or 0) + 0.22 * legend_rows)
    for job in jobs:
        width = (job["end"] - job["start"]) / 60
        ax.barh(job["row"], width, left=job["start"] / 60, height=0.8, color=colors[job["rule"]])
    if cores:
        ax.axhline(cores - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(range(rows), [f"{i + 1}" for i in range(rows)])
    ax.set_ylim(max(rows, cores or 0) - 0.5, -0.5)
    ax.set_ylabel("jobs at once")
    ax.set_xlabel("minutes since the first job started")
    handles = [matplotlib.patches.Patch(color=colors[rule], label=rule) for rule in rules]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    ax.set_title("How the jobs packed onto the cores")
    return to_data_uri(figure)


@_themed
def layer_time_bars(table: pd.DataFrame, order: list[str], layers: list[str]) -> str:
    """At batch 1 and at the large batch, one bar per backend: each layer's share of its time per
    image, the total written at the end (the slow backends' large batch is their sample)."""
    figure, axes = _figure(10, 0.8 * len(order) + 1.8, ncols=2)
    colours = dict(zip(layers, sns.color_palette("tab10", len(layers)), strict=False))
    for ax, large in zip(axes, (False, True), strict=True):
        names, totals, shares = [], [], []
        for name in order:
            rows = table[table["backend"] == name]
            size = rows["batch_size"].max() if large else 1
            rows = rows[rows["batch_size"] == size].set_index("layer")["seconds"]
            if rows.empty or rows.sum() <= 0:
                continue
            names.append(name if not large else f"{name} ({size:,})")
            totals.append(rows.sum())
            shares.append([rows.get(layer, 0.0) / rows.sum() for layer in layers])
        positions = np.arange(len(names))
        left = np.zeros(len(names))
        for k, layer in enumerate(layers):
            values = np.array([share[k] for share in shares])
            ax.barh(positions, values, left=left, color=colours[layer], label=layer)
            left += values
        for position, total in zip(positions, totals, strict=True):
            ax.annotate(
                fmt.duration(total),
                (1.0, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(positions, names)
        ax.set_xlim(0, 1.25)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25 %", "50 %", "75 %", "100 %"])
        ax.set_title("batch 1" if not large else "large batch (images per call)")
        ax.set_xlabel("share of the time per image (total at the end)")
        ax.invert_yaxis()
    axes[1].legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return to_data_uri(figure)


@_themed
def roofline(points: list[dict], peak: float, roofs: dict[str, float], machine: dict) -> str:
    """Arithmetic intensity against achieved GFLOP/s (log-log): the measured compute roofs, a
    bandwidth roof per cache level, one point per layer, backend and batch size (filled: batch 1,
    open: the large batch)."""
    figure, ax = _figure(10, 5.4)
    flops = [p for p in points if p["flops"]]
    low = min(p["intensity"] for p in flops) / 3
    high = max(p["intensity"] for p in flops) * 3
    grid = np.geomspace(low, high, 200)
    handles = []
    for (level, bandwidth), style in zip(roofs.items(), ("-", "--", "-.", ":", "-"), strict=False):
        (line,) = ax.plot(
            grid,
            np.minimum(grid * bandwidth, peak),
            style,
            color="black",
            linewidth=1,
            label=f"{level} {fmt.sig(bandwidth, 3)} GB/s",
        )
        handles.append(line)
    for key, label in (
        ("matmul", "BLAS matmul"),
        ("onnxruntime_matmul", "ONNX Runtime matmul"),
        ("numba_dot", "numba dot"),
    ):
        if machine.get(key):
            rate = float(machine[key]["gflops"])
            handles.append(
                ax.axhline(
                    rate,
                    color="grey",
                    linewidth=0.8,
                    linestyle=":",
                    label=f"{label} {fmt.sig(rate, 3)} GFLOP/s",
                )
            )
    names = list(dict.fromkeys(p["backend"] for p in flops))
    palette = dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))
    layers = list(dict.fromkeys(p["layer"] for p in flops))
    markers = dict(zip(layers, ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<"), strict=False))
    for p in flops:
        colour = palette[p["backend"]]
        ax.scatter(
            p["intensity"],
            p["achieved"],
            marker=markers.get(p["layer"], "o"),
            s=36,
            color=colour if p["batch"] == 1 else "white",
            edgecolor=colour,
            linewidth=1.2,
        )
    line2d = matplotlib.lines.Line2D
    handles += [line2d([], [], color=palette[n], marker="o", linestyle="", label=n) for n in names]
    handles += [
        line2d([], [], color="grey", marker=markers[n], linestyle="", label=n) for n in layers
    ]
    handles += [
        line2d([], [], color="grey", marker="o", linestyle="", label="batch 1"),
        line2d(
            [],
            [],
            color="grey",
            marker="o",
            markerfacecolor="white",
            linestyle="",
            label="large batch",
        ),
    ]
    ax.legend(
        handles=handles, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved, log scale)")
    ax.set_ylabel("achieved GFLOP/s (log scale)")
    ax.set_title("Roofline: every layer of every backend against this machine's roofs")
    return to_data_uri(figure)


def _plain(function):
    return _themed(function, style="white")


@_plain
def agreement_heatmaps(counts: pd.DataFrame, images: pd.DataFrame, logit_diff: pd.DataFrame) -> str:
    """Images on which each pair predicts the same class, and their max |logit difference|:
    side by side up to 4 backends, one above the other beyond (up to 8 the labels fit their
    cells). The image count is in the title when every pair saw the same images."""
    n = len(counts)
    side_by_side = n <= SIDE_BY_SIDE_BACKENDS
    figure, (agree_ax, diff_ax) = _figure(
        10,
        0.7 * n + 2.0 if side_by_side else 2 * (0.5 * n + 1.2),
        ncols=2 if side_by_side else 1,
        nrows=1 if side_by_side else 2,
    )
    fraction = counts / images
    seen = {int(m) for m in images.to_numpy().ravel() if pd.notna(m)}
    labels = counts.copy().astype(object)
    for a in counts.index:
        for b in counts.columns:
            c, m = counts.loc[a, b], images.loc[a, b]
            of = "" if len(seen) == 1 else f"\n/ {int(m):,}"
            labels.loc[a, b] = "" if pd.isna(c) else f"{int(c):,}{of}\n{fmt.percent(c / m)}"
    sns.heatmap(
        fraction.astype(float),
        annot=labels.values,
        fmt="",
        cmap="RdYlGn",
        vmin=min(0.99, float(np.nanmin(fraction.values.astype(float)))),
        vmax=1.0,
        cbar=False,
        ax=agree_ax,
        linewidths=1,
        linecolor="white",
        annot_kws={"fontsize": 8},
    )
    agree_ax.set_title(
        f"Same predicted class (of {seen.pop():,} images)"
        if len(seen) == 1
        else "Same predicted class (count / images)"
    )
    diff = logit_diff.astype(float)
    positive = diff.values[np.isfinite(diff.values) & (diff.values > 0)]
    norm = (
        LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 10))
        if positive.size
        else None
    )
    diff_labels = diff.map(lambda v: "" if pd.isna(v) else fmt.scientific(v)).values
    sns.heatmap(
        diff.where(diff > 0),
        annot=diff_labels,
        fmt="",
        cmap="rocket_r",
        norm=norm,
        cbar=False,
        ax=diff_ax,
        linewidths=1,
        linecolor="white",
        annot_kws={"fontsize": 8},
    )
    diff_ax.set_title("Largest |logit difference| over all images")
    for ax in (agree_ax, diff_ax):
        ax.tick_params(axis="x", rotation=20)
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("")
        ax.set_ylabel("")
    return to_data_uri(figure)


@_plain
def confusion_matrix(matrix: pd.DataFrame, title: str) -> str:
    figure, ax = _figure(5.6, 4.8)
    values = matrix.to_numpy()
    annot = np.where(values > 0, values, 0).astype(int).astype(str)
    annot[values == 0] = ""
    sns.heatmap(
        matrix.where(matrix > 0),
        annot=annot,
        fmt="",
        cmap="Blues",
        norm=LogNorm(vmin=1, vmax=max(int(values.max()), 10)),
        cbar=False,
        ax=ax,
        linewidths=0.5,
        linecolor="#eee",
        annot_kws={"fontsize": 7},
        square=True,
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(title)
    return to_data_uri(figure)


@_themed
def training_overlay(torch_metrics: pd.DataFrame, numpy_metrics: pd.DataFrame) -> str:
    """Train/test loss and test accuracy per epoch, PyTorch and NumPy overlaid."""
    figure, (loss_ax, acc_ax) = _figure(10, 3.4, ncols=2)
    for name, metrics, style in (("PyTorch", torch_metrics, "-"), ("NumPy", numpy_metrics, "--")):
        for column, color in (("train_loss", "C0"), ("test_loss", "C1")):
            loss_ax.plot(
                metrics["epoch"],
                metrics[column],
                style,
                marker="o",
                color=color,
                label=f"{column.removesuffix('_loss')}, {name}",
            )
        acc_ax.plot(
            metrics["epoch"],
            metrics["test_accuracy"].astype(float) * 100,
            style,
            marker="o",
            color="C2" if name == "PyTorch" else "C3",
            label=name,
        )
    loss_ax.set_title("Cross-entropy loss per epoch")
    loss_ax.set_ylabel("loss")
    acc_ax.set_title("Test accuracy per epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.legend()
        _epoch_axis(ax, pd.concat([torch_metrics["epoch"], numpy_metrics["epoch"]]))
    return to_data_uri(figure)


@_themed
def step_divergence(steps: pd.DataFrame, tolerance: float) -> str:
    """Max relative parameter difference per step (log scale): the float64 check and the run."""
    figure, ax = _figure(10, 3.4)
    for (run, dtype), group in steps.groupby(["run", "dtype"], sort=False):
        values = group["max_relative_parameter_difference"].astype(float).clip(lower=1e-17)
        ax.plot(group["step"], values, label=f"{run} ({dtype})", linewidth=1)
    ax.axhline(tolerance, color="black", linestyle=":", linewidth=1, label="float64 tolerance")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("max relative parameter difference")
    ax.set_title("NumPy vs PyTorch, parameters after each step")
    ax.legend()
    return to_data_uri(figure)


@_themed
def latency_against_macs(points: pd.DataFrame, slopes: dict[str, float | None]) -> str:
    """Median batch-1 latency against multiply-adds per image, one line per backend, log-log;
    each backend's fitted slope (``slopes``) in the legend."""
    order = list(dict.fromkeys(points["backend"]))
    figure, ax = _figure(7.5, 4.2)
    palette = dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))
    for name in order:
        group = points[points["backend"] == name].sort_values("macs")
        slope = slopes.get(name)
        label = f"{name} (slope {slope:.2f})" if slope is not None else name
        ax.plot(group["macs"], group["latency_s"], marker="o", color=palette[name], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_labels(ax.yaxis, lambda v: fmt.duration(v, 2))
    _log_labels(ax.xaxis, fmt.count)
    ax.set_xlabel("multiply-adds per image (log scale)")
    ax.set_ylabel("median latency, batch 1 (log scale)")
    ax.set_title("Latency against work, per backend")
    ax.legend(title=None, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return to_data_uri(figure)


@_themed
def accuracy_against_latency(points: pd.DataFrame) -> str:
    """Each experiment's test accuracy against its fastest backend's median latency."""
    figure, ax = _figure(7.5, 4.0)
    ax.scatter(points["latency_s"], points["accuracy"] * 100, color="C0", zorder=3)
    for row in points.itertuples(index=False):
        ax.annotate(
            f"{row.experiment} ({row.backend})",
            (row.latency_s, row.accuracy * 100),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    _log_labels(ax.xaxis, lambda v: fmt.duration(v, 2))
    ax.set_xlabel("fastest backend's median latency, batch 1 (log scale)")
    ax.set_ylabel("test accuracy, PyTorch-trained (%)")
    ax.set_title("Accuracy against speed")
    return to_data_uri(figure)

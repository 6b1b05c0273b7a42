"""Figures as self-contained ``data:image/png;base64`` URIs (Agg, no pyplot global state)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from . import fmt

DPI = 144  # crisp on high-density laptop screens; the page scales figures to its width
STYLE = {"axes.spines.top": False, "axes.spines.right": False, "font.size": 10}


def _figure(width: float, height: float, ncols: int = 1, **kwargs):
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, ncols, **kwargs)
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
    acc_ax.set_xlabel("epoch")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
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


def _plain(function):
    return _themed(function, style="white")


@_plain
def agreement_heatmaps(counts: pd.DataFrame, images: pd.DataFrame, logit_diff: pd.DataFrame) -> str:
    """Left: images on which each pair predicts the same class; right: max |logit difference|."""
    n = len(counts)
    figure, (agree_ax, diff_ax) = _figure(10, 0.7 * n + 2.0, ncols=2)
    fraction = counts / images
    labels = counts.copy().astype(object)
    for a in counts.index:
        for b in counts.columns:
            c, m = counts.loc[a, b], images.loc[a, b]
            labels.loc[a, b] = (
                "" if pd.isna(c) else f"{int(c):,} / {int(m):,}\n{fmt.percent(c / m)}"
            )
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
    agree_ax.set_title("Same predicted class (count / images)")
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
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    acc_ax.set_title("Test accuracy per epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_xlabel("epoch")
    for ax in (loss_ax, acc_ax):
        ax.legend()
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
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

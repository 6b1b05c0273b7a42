"""Section 7: how to reproduce the run, the machine and software, per-rule wall time and memory."""

from __future__ import annotations

import hashlib
from typing import Any

from .. import figures, fmt
from ..common import blas_lines, core_share
from ..inputs import Results

ENVIRONMENT_FIRST = ("cpu_model", "logical_cores", "threads", "platform", "timestamp")
ENVIRONMENT_ELSEWHERE = {"python", "packages", "blas", "load_average"}  # shown in their own rows


def section(results: Results) -> dict[str, Any]:
    env = results.environment
    packages = {name: str(v) for name, v in (results.manifest.get("versions") or {}).items()}
    packages.update({name: str(v) for name, v in (env.get("packages") or {}).items()})
    if env.get("python"):
        packages["python"] = str(env["python"]).split()[0]
    if results.config:
        command = "snakemake --cores 4 --configfile run-config.yaml"
        command_note = (
            "run-config.yaml: the config below saved as a file. It is this run's effective "
            "config, command-line overrides included, so it reproduces the run exactly."
        )
    else:
        command = "snakemake --cores 4"
        command_note = "No config was given to the report; the command uses config.yaml."
    environment = [
        {"key": key.replace("_", " "), "value": env[key]}
        for key in ENVIRONMENT_FIRST
        if env.get(key) is not None
    ] + [
        {"key": key.replace("_", " "), "value": plain(value)}
        for key, value in env.items()
        if key not in ENVIRONMENT_FIRST and key not in ENVIRONMENT_ELSEWHERE
    ]
    return {
        "packages": sorted(packages.items(), key=lambda kv: kv[0].lower()),
        "environment": environment,
        "blas": blas_lines(env.get("blas")),
        "benchmarks": _benchmarks(results),
        "command": command,
        "config_text": results.config_text or "(no config given)",
        "config_sha256": (
            hashlib.sha256(results.config_text.encode()).hexdigest()
            if results.config_text
            else None
        ),
        "command_note": command_note,
    }


def _benchmarks(results: Results) -> list[dict[str, Any]]:
    if results.benchmarks is None:
        return []
    return [
        {
            "name": (row.get("rule") and f"{row['rule']} ({row['name']})") or row["name"],
            "s": fmt.duration(row.get("s")),
            "max_rss": fmt.megabytes(row.get("max_rss")),
            "cpu_time": fmt.duration(row.get("cpu_time")),
            "mean_load": core_share(row.get("mean_load")),
            "repeats": row.get("repeats", 1),
        }
        for row in results.benchmarks.to_dict("records")
    ]


def plain(value) -> str:
    """A JSON value as one readable line: dicts as 'key: value; ...', lists comma-separated."""
    if isinstance(value, dict):
        return "; ".join(f"{key}: {plain(item)}" for key, item in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(plain(item) for item in value) or "none"
    if value is None:
        return "–"
    return str(value)


def pipeline_time(results: Results) -> dict[str, Any]:
    """Elapsed span from benchmark file times, the sum of rule wall times, and how well the jobs
    packed onto the machine's cores: the sum over the cores is the shortest the run could take."""
    bench = results.benchmarks
    if bench is None or bench.empty:
        return {
            "text": "–",
            "short": "no benchmark files",
            "detail": "no benchmarks/*.tsv found",
            "span": None,
            "sum": None,
            "packing": None,
            "timeline": None,
        }
    total = float(bench["s"].sum())
    span = float(bench["end"].max() - bench["start"].min())
    rules = len(bench)
    cores = results.environment.get("logical_cores")
    if float(bench["s"].max()) - 1.0 <= span <= total * 1.5 + 60:  # one session: a true span
        return {
            "text": fmt.duration(span),
            "short": "elapsed, first rule start to last rule end; rule times add up to "
            + fmt.duration(total),
            "detail": f"elapsed wall-clock time from the start of the first to the end of the "
            f"last of {rules} benchmarked rules (from the benchmark files' times, this report "
            f"excluded); the rules' own wall times add up to {fmt.duration(total)}",
            "span": span,
            "sum": total,
            "packing": packing(total, span, cores, cpu_seconds(bench), reserved_span(bench)),
            "timeline": figures.job_timeline(job_rows(bench), cores),
        }
    return {
        "text": fmt.duration(total),
        "short": f"sum of {rules} rule wall times (they ran in separate sessions)",
        "detail": f"sum of the wall times of {rules} benchmarked rules (this report excluded); "
        "the benchmark files come from separate runs, so an elapsed span would mislead",
        "span": None,
        "sum": total,
        "packing": None,
        "timeline": None,
    }


def packing(
    total: float,
    span: float,
    cores: int | None,
    cpu: float | None = None,
    reserved: float | None = None,
):
    """How the jobs packed onto ``cores``: their summed wall time spread evenly over the cores
    (the shortest the run could take, each job kept whole) against the elapsed span; given their
    summed CPU time, the share of the cores' time they kept busy (a 2-thread job counts twice, a
    timed job running alone on purpose once); given ``reserved`` (see reserved_span), the
    shortest span the jobs' declared threads allow, against the elapsed span."""
    if not cores or span <= 0:
        return None
    even = total / cores
    text = (
        f"on this machine's {cores} cores the jobs' {fmt.duration(total)} of wall time would take "
        f"{fmt.duration(even)} if no core ever waited; the run took {fmt.duration(span)}, "
        f"{fmt.ratio(span / even)} that"
    )
    busy = None
    if cpu is not None and cpu > 0:
        busy = f"{100 * min(cpu / (span * cores), 1):.0f} %"
        text += f"; their {fmt.duration(cpu)} of CPU time kept the cores {busy} busy"
    reserved_over = None
    # Above the span it is no bound: no job declared all of --cores (say, a run of shards only).
    if reserved is not None and 0 < reserved <= span * 1.01:
        reserved_over = fmt.ratio(span / reserved)
        text += (
            f". The threads the jobs declare (a timed job declares every core, so it runs alone) "
            f"allow no run shorter than {fmt.duration(reserved)}: this one took {reserved_over} "
            "that"
        )
    return {
        "over": fmt.ratio(span / even),
        "busy": busy,
        "reserved_over": reserved_over,
        "text": text,
    }


def reserved_span(bench) -> float | None:
    """The shortest span the jobs' declared threads allow: each job's wall time times its
    threads, summed, over the most threads any job declared (the timed jobs declare all of
    ``--cores``: Snakemake never runs jobs declaring more than that at once). None without the
    extended benchmark files' ``threads``."""
    if "threads" not in bench or bench["threads"].isna().any():
        return None
    return float((bench["s"] * bench["threads"]).sum() / bench["threads"].max())


def cpu_seconds(bench) -> float | None:
    """The jobs' summed CPU time, None where a benchmark file lacks it."""
    if "cpu_time" not in bench or bench["cpu_time"].isna().any():
        return None
    return float(bench["cpu_time"].sum())


def job_rows(bench) -> list[dict[str, Any]]:
    """Each benchmarked job (seconds since the first started) on the lowest row free at its
    start: the rows in use at a moment are the jobs running then, so fewer rows than cores is a
    core left waiting. Colour by rule (a benchmark file's name where its rule is not recorded)."""
    origin = float(bench["start"].min())
    rows_end: list[float] = []
    jobs = []
    for job in bench.sort_values(["start", "name"]).to_dict("records"):
        start, end = job["start"] - origin, job["end"] - origin
        # 0.5 s of slack: a start is the file's time less the job's own wall time
        row = next((i for i, last in enumerate(rows_end) if last <= start + 0.5), len(rows_end))
        rows_end[row : row + 1] = [end]
        rule = job.get("rule")
        jobs.append(
            {
                "row": row,
                "start": start,
                "end": end,
                "rule": rule if isinstance(rule, str) else job["name"],
            }
        )
    return jobs

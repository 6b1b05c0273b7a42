"""Input data and weights: the manifest's recorded digests, re-verified on the files on disk."""

from __future__ import annotations

import math
from typing import Any

from cnnbench.data import file_digests

from .. import fmt
from ..common import FAIL, NA, PASS, WARN, badge
from ..inputs import Results, nested

DIGESTS = ("md5", "sha256")


def section(results: Results) -> dict[str, Any]:
    configured = nested(results.config, "dataset", "files", default={}) or {}
    recorded = nested(results.manifest, "dataset", "files", default={}) or {}
    files = [
        _file(results, role, configured.get(role) or {}, recorded.get(role) or {})
        for role in sorted(set(configured) | set(recorded))
    ]
    statuses = {f["badge"]["status"] for f in files}
    if not files:
        overall = badge(NA, "no dataset files listed")
    elif FAIL in statuses:
        overall = badge(FAIL, "checksum mismatch")
    elif statuses == {PASS}:
        overall = badge(PASS, f"all {len(files)} files verified")
    else:
        verified = sum(f["badge"]["status"] == PASS for f in files)
        overall = badge(WARN, f"{verified} of {len(files)} files verified")
    name = (
        nested(results.config, "dataset", "name")
        or nested(results.manifest, "dataset", "name")
        or "–"
    )
    mirrors = nested(results.config, "dataset", "mirrors", default=[]) or []
    return {"name": name, "files": files, "badge": overall, "mirrors": mirrors}


def _file(results: Results, role: str, want: dict, got: dict) -> dict[str, Any]:
    """One dataset file: the config's and the manifest's digests, checked on the file on disk."""
    name = want.get("file") or got.get("file")
    entry = {"role": role, "file": name, **{d: want.get(d) or got.get(d) for d in DIGESTS}}
    problems = [
        f"manifest {d} differs from the config"
        for d in DIGESTS
        if want.get(d) and got.get(d) and want[d].lower() != got[d].lower()
    ]
    path = results.data_paths.get(name) if name else None
    if path is not None and path.is_file():
        actual = file_digests(path)
        problems += [
            f"{d} of the file on disk is {actual[d]}"
            for d in DIGESTS
            if entry[d] and actual[d] != entry[d].lower()
        ]
        if problems:
            entry["badge"] = badge(FAIL, "mismatch")
        elif any(entry[d] for d in DIGESTS):
            entry["badge"] = badge(PASS, "verified")
        else:
            entry["badge"] = badge(WARN, "no checksum given")
    elif problems:
        entry["badge"] = badge(FAIL, "mismatch")
    else:
        entry["badge"] = badge(NA, "not on disk")
    entry["problems"] = problems
    return entry


def weights(results: Results) -> dict[str, Any]:
    """The manifest's weights sha256, re-verified on weights.npz, and the parameter shapes."""
    recorded = results.manifest.get("sha256")
    path = results.weights_path
    actual = file_digests(path)["sha256"] if path is not None and path.is_file() else None
    if recorded and actual:
        verdict = (
            badge(PASS, "matches the file")
            if actual == recorded.lower()
            else badge(FAIL, "differs from the file")
        )
    elif recorded:
        verdict = badge(NA, "weights.npz not on disk")
    else:
        verdict = badge(NA, "not recorded")
    rows = []
    total = 0
    for name, spec in (results.manifest.get("parameters") or {}).items():
        shape = spec.get("shape", []) if isinstance(spec, dict) else []
        count = math.prod(shape) if shape else 0
        total += count
        rows.append(
            {
                "name": name,
                "shape": " × ".join(str(s) for s in shape),
                "dtype": spec.get("dtype", "") if isinstance(spec, dict) else "",
                "count": fmt.integer(count),
            }
        )
    return {
        "sha256": recorded or actual,
        "actual": actual,
        "badge": verdict,
        "parameters": rows,
        "total_parameters": fmt.integer(total) if rows else "–",
    }

"""Section 1: the verdicts, then one row per backend (accuracy.csv, agreement.csv, latencies).

The verdict cards restate the other sections' badges, which the caller passes in: this module
computes nothing twice and changes nothing it is given; its notes are returned, not appended.
"""

from __future__ import annotations

from typing import Any

from cnnbench.backends import PEERS, REFERENCE

from .. import fmt
from ..common import FAIL, PASS, badge, images_phrase, pair
from ..inputs import Backend, Results
from .timing import speedup, versus_peer


def section(
    results: Results,
    stats: dict[str, dict[str, Any]],
    *,
    agreement: dict[str, Any],
    gradcheck: dict[str, Any],
    worked: dict[str, Any],
    dataset: dict[str, Any],
) -> dict[str, Any]:
    rows = [
        _row(results, backend, stats)
        if backend.present
        else {"name": backend.name, "missing": True}
        for backend in results.backends
    ]
    missing = [r["name"] for r in rows if r["missing"]]
    images = [stats[b.name]["images"] for b in results.present_backends]
    total = len(results.test_images) if results.test_images is not None else None
    # hand-written backends only: not the reference (PyTorch) nor the production peer, the bar
    # they are measured against
    own = {name: s for name, s in stats.items() if name not in PEERS and name != REFERENCE}
    fastest = min(own, key=lambda name: own[name]["median"]) if own else None
    peer = results.peer.name if results.peer else None
    return {
        "rows": rows,
        "verdicts": verdicts(agreement, gradcheck, worked, dataset),
        "fastest": fastest,
        "fastest_median": fmt.duration(own[fastest]["median"]) if fastest else None,
        "peer": peer,
        "peer_median": fmt.duration(stats[peer]["median"]) if peer else None,
        "fastest_versus_peer": (versus_peer(fastest, own[fastest]) if fastest and peer else None),
        "images_phrase": images_phrase(results, min(images)) if images else "no images",
        "limited": bool(images and total is not None and min(images) < total),
        "notes": ["no inference results for " + ", ".join(missing)] if missing else [],
    }


def _row(results: Results, backend: Backend, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One backend: accuracy as agreement's accuracy.csv states it, agreement with the reference."""
    name = backend.name
    accuracy = results.accuracy
    found = accuracy[accuracy["backend"] == name] if accuracy is not None else None
    owned = found.iloc[0] if found is not None and len(found) else None
    row = pair(results.agreement, REFERENCE, name)
    own = stats[name]
    if name == REFERENCE:
        agree, agree_badge = "reference", None
    elif row:
        same = row["agree"] == row["images"]
        agree = f"{fmt.integer(row['agree'])} / {fmt.integer(row['images'])}"
        agree_badge = badge(PASS if same else FAIL, "same" if same else "differs")
    else:
        agree, agree_badge = "–", None
    return {
        "name": name,
        "missing": False,
        "is_reference": name == REFERENCE,
        "peer": name in PEERS,
        "images": fmt.integer(owned["images"] if owned is not None else own["images"]),
        "accuracy": fmt.percent(owned["accuracy"]) if owned is not None else "–",
        "correct": fmt.integer(owned["correct"]) if owned is not None else "–",
        "agree": agree,
        "agree_badge": agree_badge,
        "max_diff": fmt.scientific(row["max_abs_logit_diff"]) if row else "–",
        "median": fmt.duration(own["median"]),
        "speedup": speedup(name, own, stats.get(REFERENCE)),
        "versus_peer": versus_peer(name, own) if results.peer else "–",
        "total": fmt.duration(own["total"]),
    }


def verdicts(
    agreement: dict[str, Any],
    gradcheck: dict[str, Any],
    worked: dict[str, Any],
    dataset: dict[str, Any],
) -> list[dict[str, Any]]:
    """The four cards on top, each linking to the section that holds the evidence."""
    worked_text = (
        "The 4×4 example gives the hand-derived result with loops and im2col"
        + (" and PyTorch" if worked["has_torch"] else "")
        + "."
        if worked["badge"]["status"] == PASS
        else "The 4×4 example does not give the hand-derived result in every column."
    )
    dataset_text = (
        f"{dataset['name']}: md5 and sha256 of the files on disk checked against the config."
    )
    return [
        _card("Same answers as PyTorch?", agreement["badge"], agreement["verdict"], "#agreement"),
        _card("Gradients correct?", gradcheck["badge"], gradcheck["verdict"], "#gradients"),
        _card("Worked example", worked["badge"], worked_text, "#worked-example"),
        _card("Input data verified?", dataset["badge"], dataset_text, "#provenance"),
    ]


def _card(title: str, status: dict[str, str], text: str, link: str) -> dict[str, Any]:
    return {"title": title, "badge": status, "text": text, "link": link}

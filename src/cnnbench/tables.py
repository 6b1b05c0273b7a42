"""The per-image predictions table every inference step writes and agreement and the report read.

Minimal stand-in from the report's branch (issue 8, part 1): the restructure on main owns this
module; on merge, main's version replaces this one (same names).
"""

from __future__ import annotations

from cnnbench.geometry import NUM_CLASSES

LOGIT_COLUMNS = [f"logit_{k}" for k in range(NUM_CLASSES)]
PREDICTION_COLUMNS = ["index", "label", "pred", "latency_s", *LOGIT_COLUMNS]

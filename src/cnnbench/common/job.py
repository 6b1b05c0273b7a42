"""How a pipeline step (and the report) receives its work: one JSON object, one convention.

A rule runs ``python -m cnnbench.steps.<step> JOB`` where JOB is the JSON object its ``job`` param
(workflow/rules/common.smk: ``job``) writes::

    {"input": {name: path or [paths]}, "output": {name: path}, "settings": {...}}

``input`` and ``output`` are the rule's named files; ``settings`` is the step's config section,
already validated by the config schema, so a step repeats no default and no range check.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.common.errors import UserError
from cnnbench.common.runtime import exit_on_signals


@dataclass(frozen=True)
class Job:
    input: dict[str, Any]
    output: dict[str, Any]
    settings: dict[str, Any]

    def path(self, side: str, name: str) -> Path:
        """One named input or output file."""
        return Path(getattr(self, side)[name])

    def paths(self, side: str, name: str) -> list[Path]:
        """A named list of input or output files (a single file counts as a list of one)."""
        value = getattr(self, side)[name]
        return [Path(item) for item in ([value] if isinstance(value, str) else value)]

    @classmethod
    def from_json(cls, text: str) -> Job:
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"the job is not valid JSON ({error})") from error
        if not isinstance(fields, dict) or set(fields) - {"input", "output", "settings"}:
            raise UserError('the job must be a JSON object with keys "input", "output", "settings"')
        return cls(fields.get("input", {}), fields.get("output", {}), fields.get("settings", {}))


def run_job(step: Callable[[Job], None], argv: list[str] | None = None) -> None:
    """Entry point of every step: parse the job, run ``step``, turn user errors into one line.

    Bugs keep their traceback; a fault in the user's input exits 2 with what, where and how to fix.
    """
    args = sys.argv[1:] if argv is None else argv
    source = sys.modules[step.__module__]
    spec = getattr(source, "__spec__", None)  # run with -m, the module is __main__
    module = (spec.name if spec else step.__module__).removesuffix(".__main__")
    if len(args) != 1 or args[0] in ("-h", "--help"):
        doc = source.__doc__ or ""
        print(f"usage: python -m {module} JOB\n\n{doc.strip()}\n\n{__doc__.strip()}")
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)
    try:
        with exit_on_signals():  # SIGTERM/SIGINT: every atomic output's temporary file removed
            step(Job.from_json(args[0]))
    except UserError as error:
        print(f"{module}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

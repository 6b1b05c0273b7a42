"""The experiment config (config.yaml): command-line values typed by the schema, and the checks a
JSON schema cannot express.

Snakemake reads every scalar inside a nested ``--config`` value as a string
(``--config "inference={limit: 1000}"`` gives ``{"limit": "1000"}``). ``coerce`` walks the schema
alongside the config and reads such a string as YAML wherever the schema does not accept a string
there (integers, numbers, booleans, null, lists, mappings), so every documented override works as
written. ``check`` then refuses what the schema cannot: non-finite numbers and data files that
share a name. ``experiments`` merges each named experiment's overrides over the base config and
validates the result, naming the experiment and the key. NumPy-free: the Snakefile imports this
before any job runs.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cnnbench import datasets
from cnnbench.common.errors import UserError

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    type(None): "null",
    list: "array",
    dict: "object",
}


class ConfigError(UserError):
    """A config value the schema lets through but the experiment cannot use."""


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def coerce(config: dict, schema: dict) -> dict:
    """``config`` with strings read as YAML wherever the schema expects no string (a new dict)."""
    return _coerce(config, schema, schema)


def prepare(config: dict, schema: dict) -> None:
    """Type the command-line strings in ``config`` in place (before ``validate``)."""
    config.update(coerce(config, schema))


def resolve(config: dict) -> None:
    """Complete the dataset section from its preset in place (``cnnbench.datasets.resolve``)."""
    try:
        config["dataset"] = datasets.resolve(config.get("dataset"))
    except datasets.DatasetError as error:
        raise ConfigError(str(error)) from None


def experiments(config: dict, schema: dict) -> dict[str, dict]:
    """Each named experiment of ``config["experiments"]`` as a whole config, in the given order:
    the base config (``config`` without ``experiments``, its dataset section as given) with the
    experiment's sections merged over it: mappings key by key, lists and values replaced, and a
    ``dataset`` section replacing the base's whole (then completed from its preset), so no
    experiment keeps another dataset's files or checksums. Each is typed, validated by the
    schema and checked; a fault raises ConfigError naming the experiment and the key. Empty or
    absent: {} (one experiment, the base config)."""
    named = config.get("experiments") or {}
    base = {key: value for key, value in config.items() if key != "experiments"}
    validator = jsonschema.Draft202012Validator(schema)
    merged = {}
    for name, overrides in named.items():
        overrides = overrides or {}
        experiment = _merge(base, {k: v for k, v in overrides.items() if k != "dataset"})
        experiment["dataset"] = copy.deepcopy(overrides.get("dataset", base.get("dataset")))
        try:
            resolve(experiment)
            experiment = coerce(experiment, schema)
            error = jsonschema.exceptions.best_match(validator.iter_errors(experiment))
            if error is not None:
                where = _dotted(tuple(error.absolute_path)) or "(top level)"
                raise ConfigError(f"config {where}: {error.message}")
            check(experiment)
        except ConfigError as error:
            raise ConfigError(f"experiment {name!r}: {error}") from None
        merged[name] = experiment
    return merged


def _merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in: mappings key by key, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check(config: Any) -> None:
    """After ``validate``: refuse non-finite numbers anywhere and data files sharing a name."""
    for where, value in _leaves(config, ()):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"config {_dotted(where)} is {value}: must be a finite number "
                "(check config.yaml and --config)"
            )
    files = config.get("dataset", {}).get("files", {}) if isinstance(config, dict) else {}
    seen: dict[str, str] = {}
    for role, spec in files.items():
        name = spec.get("file") if isinstance(spec, dict) else None
        if name in seen:
            raise ConfigError(
                f"config dataset.files.{seen[name]}.file and dataset.files.{role}.file are both "
                f"{name!r}: every dataset file needs its own name"
            )
        seen[name] = role


# ---------------------------------------------------------------------------- schema walking


def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        reference = node["$ref"]
        if not reference.startswith("#/"):
            raise ValueError(f"only local schema references are supported, not {reference}")
        target = root
        for part in reference[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _branches(node: dict, root: dict) -> list[dict]:
    """The node and, recursively, every alternative it combines (oneOf/anyOf/allOf), resolved."""
    node = _resolve(node, root)
    found = [node]
    for keyword in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(keyword, []):
            found += _branches(branch, root)
    return found


def _types(node: dict, root: dict) -> set[str] | None:
    """JSON types the node allows, or None when it does not say (anything goes)."""
    allowed: set[str] = set()
    for branch in _branches(node, root):
        declared = branch.get("type")
        if declared is not None:
            allowed.update([declared] if isinstance(declared, str) else declared)
        for value in [*branch.get("enum", []), *([branch["const"]] if "const" in branch else [])]:
            allowed.add(_JSON_TYPES.get(type(value), "string"))
    return allowed or None


def _coerce(value: Any, node: dict, root: dict) -> Any:
    allowed = _types(node, root)
    if isinstance(value, str) and allowed is not None and "string" not in allowed:
        value = _parse(value, allowed)
    branches = _branches(node, root)
    if isinstance(value, dict):
        properties: dict[str, dict] = {}
        for branch in branches:
            properties.update(branch.get("properties", {}))
        return {
            key: _coerce(item, properties[key], root) if key in properties else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        items = next((branch["items"] for branch in branches if "items" in branch), None)
        return [_coerce(item, items, root) for item in value] if items is not None else value
    return value


def _parse(text: str, allowed: set[str]) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and "number" in allowed:
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string; a number is meant
            return float(value)
        except ValueError:
            return text
    return value


def _leaves(value: Any, where: tuple):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*where, index))
    else:
        yield where, value


def _dotted(where: tuple) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text

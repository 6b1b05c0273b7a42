"""Every command the docs show works as written, so the docs cannot rot.

Commands are found in README.md (bash blocks and inline code), config.yaml's comments and the
Makefile's comments, and run from the repository root without doing any work:

- ``snakemake ...`` as a dry run (``-n`` inserted after ``snakemake``): the config, the schema
  and the rules must accept it;
- ``make ...`` with ``make -n``; every ``snakemake`` or ``python -m cnnbench...`` line make would
  run is then checked like a documented one;
- ``python -m cnnbench...`` (needs trained weights) with ``--help`` appended: the module exists
  and knows every option the docs use;
- an inline ``--config ...`` fragment as ``snakemake --cores 2 <fragment>``.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("README.md", "config.yaml", "Makefile")
# A command starts at one of these words, at the start of a piece or after a space, `, : or (.
START = re.compile(r"(?:^|(?<=[\s`:(]))(snakemake|make|python3? -m cnnbench(?:\.\w+)*)(?=\s)")
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _pieces(source: str, text: str):
    """Text that may hold commands: shell blocks and inline code (README), comments (others)."""
    if source == "README.md":
        shell = False
        for line in text.splitlines():
            if line.startswith("```"):
                shell = line.strip() in ("```bash", "```sh", "```shell", "```console")
                continue
            if shell:
                yield line
            else:
                yield from re.findall(r"`([^`]+)`", line)
    else:
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                comment = line.lstrip()[1:]
                spans = re.findall(r"`([^`]+)`", comment)
                yield from spans or [comment]


def _command_at(text: str) -> str:
    """The command that starts ``text``: up to a comment, a column gap (3 spaces), a sentence's
    ", " or the end, never inside quotes."""
    quote = None
    end = len(text)
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif (
            text.startswith(" #", i)
            or text.startswith("   ", i)
            or text.startswith(", ", i)
            or char == "`"
        ):
            end = i
            break
    return text[:end].strip().rstrip(".;")


def _make_defaults(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) \?= (.*)$", text, flags=re.MULTILINE))


def documented_commands() -> list[tuple[str, str]]:
    found = []
    make_defaults = _make_defaults((REPO / "Makefile").read_text())
    for source in SOURCES:
        for piece in _pieces(source, (REPO / source).read_text()):
            if piece.startswith("--config"):
                found.append((source, f"snakemake --cores 2 {_command_at(piece)}"))
                continue
            for match in START.finditer(piece):
                command = _command_at(piece[match.start() :])
                if source == "Makefile":  # a comment quoting a recipe: the make variables' defaults
                    command = re.sub(
                        r"\$\((\w+)\)", lambda m: make_defaults.get(m[1], m[0]), command
                    )
                if len(command.split()) > 1 or command.startswith("python"):
                    found.append((source, command))
    first_source = {}
    for source, command in found:
        first_source.setdefault(command, source)
    return [(source, command) for command, source in first_source.items()]


COMMANDS = documented_commands()


def test_the_documented_commands_are_found():
    commands = [command for _, command in COMMANDS]
    for expected in (
        'snakemake --cores 4 --config "inference={limit: 1000}"',
        'snakemake --cores 4 --config "train={epochs: 10, seed: 1}"',
        "snakemake --cores 4 --config 'inference={\"limit\": 1000}'",
        "make run CORES=2 SNAKEMAKE_ARGS=\"--config inference='{limit: 1000}'\"",
        "make run MIRROR=file://$(realpath ../shared/mnist)/",
        "make test",
        "python -m cnnbench.bench --weights results/model/weights.npz",
    ):
        assert expected in commands
    assert {source for source, _ in COMMANDS} == set(SOURCES)
    assert len(commands) >= 14


def _bash(command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


@functools.cache
def _check(command: str) -> None:
    words = shlex.split(command)
    if words[0] == "snakemake":
        result = _bash("snakemake -n" + command[len("snakemake") :])
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command}\n{output[-3000:]}"
        assert "dry-run" in output or "Nothing to be done" in output or "--lint" in words, output
    elif words[0] == "make":
        result = _bash("make -n" + command[len("make") :])
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        for line in result.stdout.splitlines():
            if START.match(line) and not line.startswith("make"):
                _check(line)
    else:  # python -m cnnbench.X ...: needs results; the module and every option it is given
        result = _bash(f"{command} --help")
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        for option in (word.split("=")[0] for word in words if word.startswith("--")):
            assert option in result.stdout, f"{command}: {option} is not an option"


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_works_as_written(source, command):
    _check(command)

"""The step convention: one JSON job in, one line out for a user's mistake, tracebacks for bugs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnbench.common.errors import UserError
from cnnbench.common.job import Job, run_job

JOB = {"input": {"a": "x.csv", "many": ["1.csv", "2.csv"]}, "output": {"b": "y.csv"}}


def test_job_gives_named_paths():
    seen = []
    run_job(lambda job: seen.append(job), [json.dumps({**JOB, "settings": {"k": 1}})])
    (job,) = seen
    assert isinstance(job, Job) and job.settings == {"k": 1}
    assert str(job.path("input", "a")) == "x.csv" and str(job.path("output", "b")) == "y.csv"
    assert [str(p) for p in job.paths("input", "many")] == ["1.csv", "2.csv"]
    assert [str(p) for p in job.paths("input", "a")] == ["x.csv"]


@pytest.mark.parametrize(
    ("argument", "complaint"),
    [
        ("{not json", "the job is not valid JSON"),
        ('{"inputs": {}}', 'keys "input", "output", "settings"'),
        ("[1, 2]", 'keys "input", "output", "settings"'),
    ],
)
def test_malformed_job_is_one_line(argument, complaint, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_job(lambda job: None, [argument])
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err


def test_user_error_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    def bad_input(job):
        raise UserError("train.limit 70000 exceeds the 60000 training images")

    with pytest.raises(SystemExit) as exit_:
        run_job(bad_input, ["{}"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.strip().endswith("error: train.limit 70000 exceeds the 60000 training images")
    assert error.count("\n") == 1

    def bug(job):
        raise KeyError("settings")

    with pytest.raises(KeyError):
        run_job(bug, ["{}"])


def test_step_module_help_and_usage():
    command = [sys.executable, "-m", "cnnbench.steps.gather"]
    help_ = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True)
    assert "usage: python -m cnnbench.steps.gather JOB" in help_.stdout
    assert "Gather the shards" in help_.stdout
    missing = subprocess.run(command, capture_output=True, text=True)
    assert missing.returncode == 2 and "usage:" in missing.stdout

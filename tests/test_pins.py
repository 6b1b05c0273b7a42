"""The pip lock and the conda environment pin the same versions, and torch is the CPU 2.13.0."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def lock_pins() -> list[str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_lock_pins_exact_versions():
    pins = lock_pins()
    assert all("==" in pin for pin in pins), [pin for pin in pins if "==" not in pin]
    assert "torch==2.13.0" in pins
    assert any(pin.startswith("snakemake==9.") for pin in pins)


def test_conda_env_matches_lock():
    env = yaml.safe_load((REPO / "envs" / "cnnbench.yaml").read_text())
    (pip_section,) = [item for item in env["dependencies"] if isinstance(item, dict)]
    assert pip_section["pip"] == lock_pins()

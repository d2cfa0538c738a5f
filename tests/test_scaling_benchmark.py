"""benchmarks/scaling.py runs end to end with tiny settings: every configuration trains and
the last line is the JSON object of images/s; it simulates 8 CPU devices (jaxdl.devices.simulate_cpu_devices)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxdl import devices

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    """The script's run in a subprocess; its environment is this one's (conftest.py's XLA_FLAGS)."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180,
                          check=False)


@pytest.mark.slow
def test_scaling_benchmark_tiny_run():
    # The env inherits conftest.py's XLA_FLAGS (8 CPU devices); the script leaves a set count alone.
    # Compilation takes most of the time: the bfloat16 row (one more step to compile) is left out.
    done = run_script("--steps", "2", "--repeats", "1", "--devices", "1,2,16", "--batch", "16",
                      "--steps-per-call", "2", "--skip-bfloat16")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    rates = result["images_per_s"]
    assert set(rates) == {"float32 x1", "float32 x2", "float32 2 steps/call x1"}
    assert all(rate > 0 for rate in rates.values()), rates
    assert set(result["first_call_s"]) == set(rates)
    assert any(line.startswith("skipped: 16 devices") for line in lines), done.stdout
    assert "8 devices" in lines[0], lines[0]  # conftest.py's count, not doubled or lost
    assert "configuration" in done.stdout and "vs float32 x1" in done.stdout


def test_simulate_cpu_devices_appends_once():
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    devices.simulate_cpu_devices(8, env)
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=8"
    devices.simulate_cpu_devices(8, env)  # already there: unchanged
    assert env["XLA_FLAGS"].count("device_count") == 1
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}  # the caller's count stands
    devices.simulate_cpu_devices(8, env)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    env = {"JAX_PLATFORMS": "cuda"}  # not the CPU: no flag
    devices.simulate_cpu_devices(8, env)
    assert "XLA_FLAGS" not in env
    env = {"JAX_PLATFORMS": "cuda,cpu"}
    devices.simulate_cpu_devices(4, env)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4"


@pytest.mark.slow
def test_simulated_devices_are_there_when_jax_starts_after_the_call():
    # A fresh process without a count in XLA_FLAGS: importing jaxdl starts no backend, so the call still counts.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("import jax, jaxdl; from jaxdl import devices; devices.simulate_cpu_devices(3); "
            "print(jax.device_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={**env, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "3"

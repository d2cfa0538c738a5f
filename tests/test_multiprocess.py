"""Two processes on localhost (JAX's multi-controller runtime, CPU collectives through gloo)
train the MNIST CNN on a subset to the same result as one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from experiment_scripts import EXPERIMENTS, load_experiment

from jaxdl.checkpoint import load_checkpoint

QUICK = ["--epochs", "2", "--train-examples", "1024", "--batch-size", "64", "--features", "8,16", "--hidden", "32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def one_cpu_device_env() -> dict:
    """The environment without conftest.py's 8 simulated devices: each process has one."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    return {**os.environ, "XLA_FLAGS": " ".join(flags)}


def test_two_processes_train_mnist_to_the_result_of_one(tmp_path, mnist_data_dir):
    flags = [*QUICK, "--data-dir", str(mnist_data_dir)]
    alone = load_experiment("mnist_cnn").main([*flags, "--devices", "1", "--out", str(tmp_path / "one")])

    coordinator = f"localhost:{free_port()}"
    workers = [
        subprocess.Popen(
            [sys.executable, str(EXPERIMENTS / "mnist_cnn.py"), *flags, "--out", str(tmp_path / "two"),
             "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(rank)],
            env=one_cpu_device_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    logs = [worker.communicate(timeout=300)[0] for worker in workers]
    for rank, (worker, log) in enumerate(zip(workers, logs)):
        assert worker.returncode == 0, f"process {rank} failed:\n{log[-3000:]}"
        assert f"2 processes (this is {rank})" in log

    together = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert abs(together["test_accuracy"] - alone["test_accuracy"]) <= 0.002  # 20 of 10,000 images
    history = {name: load_checkpoint(tmp_path / name / "checkpoints").meta["history"] for name in ("one", "two")}
    for got, want in zip(history["two"], history["one"]):  # BatchNorm's batch sums, added in another order
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=2e-3)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=2e-3)
    written = sorted(path.name for path in Path(tmp_path / "two" / "checkpoints").iterdir())
    assert written == ["step_000000016.ckpt", "step_000000032.ckpt"]  # one file per save, by process 0

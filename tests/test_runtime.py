"""Process-level settings (attnmace.runtime): the device, and memory."""

import os
import subprocess
import sys

import pytest

CHECK = "from attnmace.runtime import retain_freed_memory as r; print(r(), r())"


def _run(env_value):
    env = dict(os.environ)
    env.pop("ATTNMACE_RETAIN_MEMORY", None)
    if env_value is not None:
        env["ATTNMACE_RETAIN_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retain_freed_memory_is_on_by_default_and_idempotent():
    assert _run(None) == ["True", "True"]


def test_retain_freed_memory_can_be_switched_off():
    assert _run("0") == ["False", "False"]


def test_torch_allocations_work_after_the_switch():
    code = (
        "from attnmace.runtime import retain_freed_memory; import torch; retain_freed_memory();"
        "x = [torch.ones(40_000_000) for _ in range(2)]; del x; y = torch.ones(40_000_000); print(float(y.sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == 4e7


def test_resolve_device_names_what_is_missing():
    import torch

    from attnmace.runtime import resolve_device

    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'gpu' is not a torch device name"):
        resolve_device("gpu")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f"has {count} CUDA device"):
            resolve_device(f"cuda:{count}")
    else:
        with pytest.raises(ValueError, match="'cuda' asks for CUDA, which is not available.*device='cpu'"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS, which is not available"):
            resolve_device("mps")


def test_calculator_and_training_name_a_missing_device(tmp_path):
    from helpers import tiny_model

    from attnmace import AttnMACECalculator
    from attnmace.train.cli import eval_main, resolve_options

    with pytest.raises(ValueError, match="'gpu' is not a torch device name"):
        AttnMACECalculator(tiny_model(2), device="gpu")
    with pytest.raises(SystemExit, match="attnmace-train: --device: device 'gpu'"):
        resolve_options(["--train-file", str(tmp_path / "train.extxyz"), "--device", "gpu"])
    with pytest.raises(SystemExit, match="attnmace-eval: --device: device 'gpu'"):
        eval_main(["gap20.pt", str(tmp_path / "data.extxyz"), "--device", "gpu"])

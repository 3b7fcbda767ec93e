"""Process-level memory settings (attnmace.runtime)."""

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

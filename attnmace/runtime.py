"""Process-level settings: the device to run on, and memory settings that make CPU training and MD
faster.

* :func:`resolve_device` turns a device name into a ``torch.device`` that this machine has, or
  raises a ``ValueError`` that says what is missing (not an assertion from inside torch).

Each step of force training or MD allocates edge- and neighbourhood-sized tensors of hundreds of
MB and frees them again. glibc serves every allocation above 32 MB with a fresh ``mmap`` and
returns it to the system on free, so the next step faults the same pages in again, one by one.
On the 2-core VM of our benchmarks that page faulting cost about a third of a training step.

* :func:`retain_freed_memory` tells glibc to serve large allocations from its heap and never to
  give freed heap memory back (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, -1)``),
  so the pages of one step are reused by the next. The process keeps its peak memory reserved
  for as long as it runs (resident-set size no longer drops after a large structure). The
  training command and :class:`~attnmace.AttnMACECalculator` call it; set
  ``ATTNMACE_RETAIN_MEMORY=0`` in the environment to keep glibc's defaults.
* :func:`thp_enabled` reports whether torch was imported with transparent huge pages for its CPU
  allocations (``import attnmace`` before ``torch`` switches them on).
"""

import ctypes
import os
import sys

__all__ = ["resolve_device", "retain_freed_memory", "thp_enabled"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4

_retained = None


def resolve_device(device=None):
    """The ``torch.device`` for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a
    ``torch.device``); ``None`` picks CUDA when available, else the CPU.

    Raises:
        ValueError: a name torch does not know, or a device this machine lacks (CUDA or MPS not
            available, a CUDA index beyond the GPUs present), with what there is.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device {device!r} is not a torch device name (e.g. 'cpu', 'cuda', 'cuda:1'): {error}"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {device!r} asks for CUDA, which is not available ({why}); use device='cpu'")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), numbered from 0")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asks for Apple's MPS, which is not available here; use device='cpu'")
    return resolved


def retain_freed_memory() -> bool:
    """Keep memory freed by torch in the process heap for reuse (glibc on Linux only).

    Returns True if the setting is in effect. Safe to call more than once; does nothing if
    ``ATTNMACE_RETAIN_MEMORY=0`` or off glibc.
    """
    global _retained
    if _retained is not None:
        return _retained
    _retained = False
    if os.environ.get("ATTNMACE_RETAIN_MEMORY", "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; -1 as the trim threshold disables trimming altogether
    _retained = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
    return _retained


def thp_enabled() -> bool:
    """Whether torch allocates CPU tensors with transparent huge pages (``THP_MEM_ALLOC_ENABLE``)."""
    return os.environ.get("THP_MEM_ALLOC_ENABLE", "0") == "1"

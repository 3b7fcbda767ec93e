"""Process-level memory settings that make CPU training and MD faster.

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

__all__ = ["retain_freed_memory", "thp_enabled"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4

_retained = None


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

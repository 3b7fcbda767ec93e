"""attnmace: MACE with geometric attention and layer-dependent cutoffs, for ASE.

Norwood, Schaaf, Batatia, Csányi, Bhowmik, "Enhancing the local expressivity of geometric graph
neural networks".
"""

import os as _os
import sys as _sys

# Our edge tensors are large and short-lived. With the default allocator every one of them is a
# fresh mmap whose pages fault in one by one, which costs several times the arithmetic on CPU
# (measured 6-8x for a 300 MB product). Transparent huge pages for torch's CPU allocations remove
# most of that. torch reads the switch once, at import, so it only takes effect when attnmace is
# imported first; ``attnmace.runtime.thp_enabled`` reports whether it is on. See also
# ``attnmace.runtime.retain_freed_memory``, which the calculator and the training command call.
if "torch" not in _sys.modules:
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from ._version import __version__  # noqa: E402
from .calculator import AttnMACECalculator, shipped_models  # noqa: E402
from .config import PRESETS, ModelConfig, make_config  # noqa: E402
from .export import export_model, load_model, read_metadata, rebuild_eager  # noqa: E402
from .model import AttnMACE, build_model, count_parameters  # noqa: E402

__all__ = [
    "PRESETS",
    "AttnMACE",
    "AttnMACECalculator",
    "ModelConfig",
    "__version__",
    "build_model",
    "count_parameters",
    "export_model",
    "load_model",
    "make_config",
    "read_metadata",
    "rebuild_eager",
    "shipped_models",
]

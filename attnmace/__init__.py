"""attnmace: MACE with geometric attention and layer-dependent cutoffs, for ASE.

Norwood, Schaaf, Batatia, Csányi, Bhowmik, "Enhancing the local expressivity of geometric graph
neural networks".
"""

from ._version import __version__
from .calculator import AttnMACECalculator, shipped_models
from .config import PRESETS, ModelConfig, make_config
from .export import export_model, load_model, read_metadata, rebuild_eager
from .model import AttnMACE, build_model, count_parameters

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

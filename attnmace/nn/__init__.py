"""Building blocks of AttnMACE, one concept per file."""

from .aggregation import SumAggregation
from .attention import AttentionAggregation, smooth_attention
from .cutoff import PolynomialEnvelope, smootherstep, soft_floor
from .interaction import InteractionBlock
from .product import SymmetricContraction
from .radial import BesselBasis, RadialEmbedding
from .readout import LinearReadout, MLPReadout
from .repulsion import ZBLRepulsion

__all__ = [
    "AttentionAggregation",
    "BesselBasis",
    "InteractionBlock",
    "LinearReadout",
    "MLPReadout",
    "PolynomialEnvelope",
    "RadialEmbedding",
    "SumAggregation",
    "SymmetricContraction",
    "ZBLRepulsion",
    "smooth_attention",
    "smootherstep",
    "soft_floor",
]

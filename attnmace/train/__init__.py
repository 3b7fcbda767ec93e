"""Training subpackage: data (extxyz, HDF5), statistics, loss, trainer, evaluation and CLIs."""

from .data import DataError, DataKeys, Frame, HDF5Dataset, load_frames, read_extxyz, write_hdf5
from .evaluate import compute_metrics, predict
from .graphs import GraphDataset, collate_graphs
from .loss import LossWeights, compute_loss
from .stats import average_neighbours, fit_e0s, scale_and_shift
from .trainer import Trainer, TrainSettings

__all__ = [
    "DataError",
    "DataKeys",
    "Frame",
    "GraphDataset",
    "HDF5Dataset",
    "LossWeights",
    "Trainer",
    "TrainSettings",
    "average_neighbours",
    "collate_graphs",
    "compute_loss",
    "compute_metrics",
    "fit_e0s",
    "load_frames",
    "predict",
    "read_extxyz",
    "scale_and_shift",
    "write_hdf5",
]

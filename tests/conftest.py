"""Fixtures shared by the tests; helpers live in ``helpers.py``."""

import pytest
import torch
from ase import Atoms
from helpers import cluster, diamond, slab, triclinic

torch.set_num_threads(1)  # small systems are overhead-bound; also keeps CI timings stable


@pytest.fixture(params=["diamond", "triclinic", "slab", "cluster"])
def structure(request) -> Atoms:
    return {"diamond": diamond, "triclinic": triclinic, "slab": slab, "cluster": cluster}[request.param]()

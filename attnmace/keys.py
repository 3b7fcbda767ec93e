"""Names of the tensors passed to and returned by the model, with their shapes."""

POSITIONS = "positions"  # (n_atoms, 3) Å
SPECIES = "species"  # (n_atoms,) int64 element index into the model's species list
CELL = "cell"  # (n_graphs, 3, 3) Å, rows are lattice vectors
BATCH = "batch"  # (n_atoms,) int64 structure index
EDGE_INDEX = "edge_index"  # (2, n_edges) int64: rows (centre i, neighbour j)
SHIFTS = "shifts"  # (n_edges, 3) integer cell shifts: r_ij = x_j - x_i + shifts @ cell

ENERGY = "energy"  # (n_graphs,) eV
NODE_ENERGY = "node_energy"  # (n_atoms,) eV
LAYER_ENERGY = "layer_energy"  # (n_atoms, n_layers) eV, per-layer site-energy terms
REPULSION_ENERGY = "repulsion_energy"  # (n_atoms,) eV, ZBL site energy (zeros without it)
FORCES = "forces"  # (n_atoms, 3) eV/Å
STRESS = "stress"  # (n_graphs, 3, 3) eV/Å^3, ASE sign convention
VIRIAL = "virial"  # (n_graphs, 3, 3) eV

"""The ASE calculator: finite differences, boundary conditions, dtypes, attention, errors."""

from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter
from helpers import cluster, diamond, random_rotation, slab, tiny_model, triclinic

from attnmace import AttnMACE, AttnMACECalculator, export_model, shipped_models
from attnmace.calculator import resolve_model_path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calc") / "tiny.pt"
    export_model(tiny_model(2), path)
    return path


def test_forces_match_finite_differences(structure, model_file):
    structure.calc = AttnMACECalculator(model_file, device="cpu")
    forces = structure.get_forces()
    numerical = calculate_numerical_forces(structure, eps=1e-5)
    assert np.abs(forces - numerical).max() < 1e-5
    assert np.abs(forces).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("make", [diamond, triclinic])
def test_stress_matches_finite_differences(make, model_file):
    atoms = make()
    atoms.calc = AttnMACECalculator(model_file)
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress - numerical).max() < 1e-5
    assert np.abs(stress).max() > 1e-4


def test_frechet_cell_filter_gradients(model_file):
    """Generalised forces of FrechetCellFilter are minus the gradient of its energy."""
    atoms = triclinic()
    atoms.calc = AttnMACECalculator(model_file)
    filt = FrechetCellFilter(atoms)
    x0 = filt.get_positions().copy()
    forces = filt.get_forces()
    eps = 1e-5
    numerical = np.zeros_like(x0)
    for a in range(len(x0)):
        for c in range(3):
            e = []
            for sign in (1, -1):
                x = x0.copy()
                x[a, c] += sign * eps
                filt.set_positions(x)
                e.append(filt.get_potential_energy())
            numerical[a, c] = -(e[0] - e[1]) / (2 * eps)
    filt.set_positions(x0)
    assert np.abs(forces - numerical).max() < 1e-5


def test_properties_and_layer_energies(model_file):
    atoms = diamond()
    atoms.calc = AttnMACECalculator(model_file)
    energy = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == energy
    assert np.isclose(atoms.get_potential_energies().sum(), energy)
    layer = atoms.calc.results["layer_energies"]
    assert layer.shape == (2,) and atoms.calc.results["atomic_layer_energies"].shape == (8, 2)
    assert np.isclose(layer.sum() + len(atoms) * 0.0, energy)  # E0 = shift = 0 for this model


def test_slab_and_molecule_have_no_stress(model_file):
    for atoms in (slab(), cluster()):
        atoms.calc = AttnMACECalculator(model_file)
        assert np.isfinite(atoms.get_forces()).all()
        with pytest.raises(PropertyNotImplementedError, match="3-D periodic.*more than 3 Å of vacuum"):
            atoms.get_stress()


def test_float32_close_to_float64(model_file):
    atoms = diamond()
    f64 = AttnMACECalculator(model_file, dtype="float64")
    f32 = AttnMACECalculator(model_file, dtype="float32")
    e64, e32 = f64.get_potential_energy(atoms), f32.get_potential_energy(atoms)
    assert abs(e64 - e32) < 1e-4 * max(1.0, abs(e64))
    assert np.abs(f64.get_forces(atoms) - f32.get_forces(atoms)).max() < 1e-4
    with pytest.raises(ValueError, match="dtype"):
        AttnMACECalculator(model_file, dtype="float16")


def test_eager_model_gives_same_results_and_is_not_modified(model_file):
    model = tiny_model(2)
    atoms = diamond()
    eager = AttnMACECalculator(model, dtype="float32")
    scripted = AttnMACECalculator(model_file, torchscript=True)
    assert next(model.parameters()).dtype == torch.float64  # the caller's model was not cast
    assert abs(eager.get_potential_energy(atoms) - scripted.get_potential_energy(atoms)) < 1e-4


def test_get_attention(model_file):
    atoms = diamond()
    calc = AttnMACECalculator(model_file)
    layers = calc.get_attention(atoms)
    assert len(layers) == 2
    for layer, cutoff in zip(layers, (2.2, 3.0)):
        assert layer["weights"].shape == (len(layer["i"]), 2)
        assert layer["distance"].max() < cutoff
        sums = np.zeros((len(atoms), 2))
        np.add.at(sums, layer["i"], layer["weights"])
        assert np.allclose(sums, 1.0)
    assert len(layers[1]["i"]) > len(layers[0]["i"])  # the larger cutoff sees more neighbours


def test_attention_multipliers_are_those_the_model_applies():
    """With equal logits every edge's multiplier is 1: so the envelope behind the returned
    multipliers is the network's own, the inner cutoff's floor below it included."""
    import copy

    from attnmace.model import with_inner_cutoffs

    model = copy.deepcopy(tiny_model())
    model = with_inner_cutoffs(model, model.config, [[1.3]])
    with torch.no_grad():
        for layer in model.layers:
            layer.aggregation.query.weight.zero_()
    atoms = cluster()[:5]
    atoms.positions[1] = atoms.positions[0] + [1.22, 0.0, 0.0]  # inside the inner cutoff's window
    layers = AttnMACECalculator(model).get_attention(atoms)
    for layer in layers:
        assert np.allclose(layer["multipliers"], 1.0, atol=1e-12)
    assert min(layer["distance"].min() for layer in layers) < 1.3
    trained = AttnMACECalculator(tiny_model()).get_attention(atoms)  # real logits: unequal multipliers
    for layer in trained:
        u_count = np.zeros(len(atoms))
        np.add.at(u_count, layer["i"], layer["weights"][:, 0] / layer["multipliers"][:, 0])  # u / Σu
        assert np.allclose(u_count, 1.0) and layer["multipliers"].std() > 1e-3


def test_atoms_far_outside_the_cell_keep_float32_precision(model_file):
    """Long MD leaves atoms unwrapped, far from the cell; the model gets them wrapped in float64,
    so a float32 calculator gives the numbers of the wrapped cell (before: 0.04 eV/Å off at
    18,500 Å), and get_attention's shifts still refer to the atoms' own positions."""
    atoms = triclinic()
    far = atoms.copy()
    far.positions += 3000 * far.cell.sum(axis=0)  # every atom 3000 cell vectors away
    far.positions[0] -= 7 * far.cell[1]  # and one of them elsewhere
    for dtype, tol in (("float32", 2e-5), ("float64", 1e-10)):
        calc = AttnMACECalculator(model_file, dtype=dtype)
        energy, forces = calc.get_potential_energy(atoms), calc.get_forces(atoms)
        stress = calc.get_stress(atoms)
        assert calc.get_potential_energy(far) == pytest.approx(energy, rel=tol, abs=tol)
        np.testing.assert_allclose(calc.get_forces(far), forces, rtol=0, atol=50 * tol)
        np.testing.assert_allclose(calc.get_stress(far), stress, rtol=0, atol=tol)
    calc = AttnMACECalculator(model_file)
    for layer in calc.get_attention(far):
        vectors = far.positions[layer["j"]] - far.positions[layer["i"]] + layer["shift"] @ far.cell.array
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), layer["distance"], rtol=0, atol=1e-8)


def test_get_attention_without_heads(tmp_path):
    path = export_model(tiny_model(0), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="no attention heads"):
        AttnMACECalculator(path).get_attention(diamond())


def test_descriptors_are_the_layers_node_features(model_file):
    """Invariant features per layer, side by side; invariant under rotation, equivariant under
    permutation of the atoms; the TorchScript module gives the eager model's."""
    atoms = triclinic()
    calc = AttnMACECalculator(model_file)
    channels = calc.metadata["config"]["channels"]
    invariant = calc.get_descriptors(atoms)
    assert invariant.shape == (len(atoms), 2 * channels)
    first = calc.get_descriptors(atoms, num_layers=1)
    np.testing.assert_array_equal(first, invariant[:, :channels])
    full = calc.get_descriptors(atoms, invariants_only=False)
    irreps_dims = [layer.irreps_out.dim for layer in calc.model.layers]
    assert full.shape == (len(atoms), sum(irreps_dims))
    np.testing.assert_array_equal(full[:, :channels], invariant[:, :channels])  # scalars come first
    np.testing.assert_array_equal(full[:, irreps_dims[0] :], invariant[:, channels:])  # last layer: scalars only
    assert np.abs(full[:, channels : irreps_dims[0]]).max() > 1e-6  # the equivariant part is there

    rotated = atoms.copy()
    rot = random_rotation(3)
    rotated.set_cell(atoms.cell @ rot.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rot.T
    np.testing.assert_allclose(calc.get_descriptors(rotated), invariant, rtol=0, atol=1e-10)
    perm = np.random.default_rng(0).permutation(len(atoms))
    np.testing.assert_allclose(calc.get_descriptors(atoms[perm]), invariant[perm], rtol=0, atol=1e-10)

    scripted = AttnMACECalculator(model_file, torchscript=True)
    np.testing.assert_allclose(scripted.get_descriptors(atoms), invariant, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="needs atoms"):
        AttnMACECalculator(model_file).get_descriptors()
    atoms.calc = calc
    atoms.get_potential_energy()
    np.testing.assert_allclose(calc.get_descriptors(), invariant, rtol=0, atol=1e-10)  # the calculator's atoms
    for bad in (0, 3, -2):
        with pytest.raises(ValueError, match="num_layers must be -1 or between 1 and 2"):
            calc.get_descriptors(atoms, num_layers=bad)


def test_bad_inputs_raise_clear_errors(model_file):
    calc = AttnMACECalculator(model_file)
    atoms = diamond()
    atoms.numbers[0] = 3
    with pytest.raises(ValueError, match=r"\['Li'\] at atom indices \[0\]"):
        calc.get_potential_energy(atoms)
    atoms = diamond()
    atoms.positions[1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        calc.get_forces(atoms)


def test_unknown_model_name_lists_shipped_models():
    with pytest.raises(FileNotFoundError, match="shipped models: "):
        AttnMACECalculator("no-such-model.pt")
    assert isinstance(shipped_models(), list)


def test_neighbour_list_reuse_equals_rebuilding(model_file):
    """MD with a reused (skin) neighbour list gives the results of rebuilding it every step."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = diamond()
    atoms.set_velocities(np.random.default_rng(0).normal(scale=0.05, size=(len(atoms), 3)))
    reused = AttnMACECalculator(model_file, skin=1.0)
    fresh = AttnMACECalculator(model_file, skin=0.0)
    atoms.calc = reused
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    for _ in range(12):
        dyn.run(1)
        assert abs(atoms.get_potential_energy() - fresh.get_potential_energy(atoms)) < 1e-11
        assert np.abs(atoms.get_forces() - fresh.get_forces(atoms)).max() < 1e-11
        assert np.abs(atoms.get_stress() - fresh.get_stress(atoms)).max() < 1e-12
    assert reused.neighbours.builds < fresh.neighbours.builds == 12
    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.01, scale_atoms=True)  # a new cell always rebuilds
    builds = reused.neighbours.builds
    assert abs(reused.get_potential_energy(strained) - fresh.get_potential_energy(strained)) < 1e-11
    assert reused.neighbours.builds == builds + 1


def test_float32_energy_is_accumulated_in_float64(model_file):
    from attnmace import keys, load_model
    from attnmace.graph import atoms_to_graph

    module = load_model(model_file).to(torch.float32)
    out = module(atoms_to_graph(diamond() * (2, 2, 2), [6], 3.0, dtype=torch.float32))
    assert out[keys.ENERGY].dtype == torch.float64 and out[keys.FORCES].dtype == torch.float32
    assert torch.isclose(out[keys.ENERGY][0], out[keys.NODE_ENERGY].double().sum(), rtol=0, atol=1e-9)


def test_shipped_model_found_by_name_from_any_directory(model_file, tmp_path, monkeypatch):
    import shutil

    import attnmace.calculator as calculator

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(model_file, shipped / "carbon-test.pt")
    monkeypatch.setattr(calculator.resources, "files", lambda package: shipped)
    monkeypatch.chdir(tmp_path)
    assert shipped_models() == ["carbon-test.pt"]
    for name in ("carbon-test.pt", "carbon-test"):
        calc = AttnMACECalculator(name, device="cpu")
        assert np.isfinite(calc.get_potential_energy(diamond()))
    with pytest.raises(FileNotFoundError, match="shipped models: carbon-test.pt"):
        AttnMACECalculator("gap20.pt")


def test_dtype_may_be_given_as_a_torch_dtype(model_file):
    calc = AttnMACECalculator(model_file, dtype=torch.float32)
    assert calc.dtype == torch.float32 and calc.todict()["dtype"] == "float32"
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32', got 'float16'"):
        AttnMACECalculator(model_file, dtype=torch.float16)


def test_negative_skin_is_rejected(model_file):
    with pytest.raises(ValueError, match=r"skin must be a finite number >= 0 \(Å\), got -0.1"):
        AttnMACECalculator(model_file, skin=-0.1)
    with pytest.raises(TypeError, match="skin must be a number of Å, got 'abc'"):
        AttnMACECalculator(model_file, skin="abc")


def test_misspelt_options_and_odd_model_arguments_are_named(model_file, tmp_path):
    """ASE would keep a misspelt keyword as a parameter and ignore it; the calculator refuses it."""
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['dtpye'\]"):
        AttnMACECalculator(model_file, dtpye="float32")
    calc = AttnMACECalculator(model_file, label="run1", directory=str(tmp_path))  # ASE's own are passed on
    assert calc.label.endswith("run1") and "label" not in calc.todict()
    with pytest.raises(IsADirectoryError, match="is a directory, not a model file"):
        AttnMACECalculator(tmp_path)
    with pytest.raises(TypeError, match="a file's path or a shipped model's name, got None"):
        AttnMACECalculator(None)


def test_a_local_file_wins_over_a_shipped_model_of_its_name(model_file, tmp_path, monkeypatch):
    import shutil

    shutil.copy(model_file, tmp_path / "gap20.pt")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("gap20.pt") == Path("gap20.pt")
    monkeypatch.chdir(tmp_path.parent)
    shipped = resolve_model_path("gap20")  # without .pt too
    assert shipped.name == "gap20.pt" and shipped.parent.name == "models"


def _assert_same_efs(atoms, calc, reference_calc, energy, rest):
    """``calc`` gives ``reference_calc``'s energy, forces and (3-D periodic cells) stress; tolerances
    as ``(rtol, atol)``."""
    periodic = bool(atoms.pbc.all())
    atoms.calc = reference_calc
    reference = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress() if periodic else None)
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_potential_energy(), reference[0], rtol=energy[0], atol=energy[1])
    np.testing.assert_allclose(atoms.get_forces(), reference[1], rtol=rest[0], atol=rest[1])
    if periodic:
        np.testing.assert_allclose(atoms.get_stress(), reference[2], rtol=rest[0], atol=rest[1])


def test_compiled_layers_match_torchscript(model_file):
    """Compiled layers give the TorchScript file's energy, forces and stress.

    The ``aot_eager`` backend runs the same capture, dynamic shapes and compiled backward as
    TorchInductor without its C++ code generation, which takes minutes on 2 cores; the inductor
    path itself is run by ``benchmarks/compile_speed.py``.
    """
    atoms = diamond()
    scripted = AttnMACECalculator(model_file, device="cpu", torchscript=True)
    compiled = AttnMACECalculator(model_file, device="cpu", compile="aot_eager")
    for _ in range(2):  # the second call, with moved atoms, reuses the compiled code (dynamic shapes)
        _assert_same_efs(atoms, compiled, scripted, energy=(1e-10, 1e-10), rest=(1e-8, 1e-9))
        atoms.positions[0] += 0.3


def test_unknown_compile_backend_is_named(model_file):
    with pytest.raises(Exception, match="Invalid backend: 'nope'"):
        AttnMACECalculator(model_file, device="cpu", compile="nope")


def test_files_run_eager_by_default_with_the_torchscript_numbers(model_file):
    atoms = diamond()
    default = AttnMACECalculator(model_file, device="cpu")
    scripted = AttnMACECalculator(model_file, device="cpu", torchscript=True)
    assert isinstance(default.model, AttnMACE)
    assert isinstance(scripted.model, torch.jit.ScriptModule)
    _assert_same_efs(atoms, default, scripted, energy=(1e-12, 1e-10), rest=(1e-10, 1e-10))
    with pytest.raises(ValueError, match="either compile or torchscript"):
        AttnMACECalculator(model_file, compile=True, torchscript=True)


def test_a_file_this_version_cannot_rebuild_runs_as_torchscript(model_file, monkeypatch):
    import attnmace.calculator as calculator

    def fail(*args, **kwargs):
        raise TypeError("unexpected keyword argument 'new_option'")

    monkeypatch.setattr(calculator, "eager_from_scripted", fail)
    with pytest.warns(UserWarning, match="cannot rebuild the model .*new_option.*TorchScript"):
        calc = AttnMACECalculator(model_file, device="cpu")
    assert isinstance(calc.model, torch.jit.ScriptModule)
    assert np.isfinite(calc.get_potential_energy(diamond()))


def _saved_bytes(calc, atoms) -> List[int]:
    """Sizes in bytes of the distinct storages that autograd keeps outside checkpointed regions."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    atoms.calc = calc
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        calc.calculate(atoms, ["energy", "forces", "stress"])
    return list(storages.values())


@pytest.mark.parametrize("heads", [2, 0])
def test_low_memory_gives_the_same_numbers_and_keeps_less(heads, tmp_path):
    from attnmace.calculator import checkpoint_edges

    path = export_model(tiny_model(heads), tmp_path / f"tiny{heads}.pt")
    atoms = diamond().repeat((2, 1, 1))  # 16 atoms, a few hundred edges per layer
    default = AttnMACECalculator(path, device="cpu")
    low = AttnMACECalculator(path, device="cpu", low_memory=True)
    checkpoint_edges(low.model, 40)  # many chunks here (the default is sized for large systems)
    for _ in range(2):
        _assert_same_efs(atoms, low, default, energy=(1e-12, 1e-10), rest=(1e-10, 1e-12))
        atoms.positions[0] += 0.3
    # the per-edge intermediates (the largest tensors kept otherwise) are recomputed, not kept
    kept_low, kept_default = _saved_bytes(low, atoms.copy()), _saved_bytes(default, atoms.copy())
    assert max(kept_low) < 0.5 * max(kept_default)
    assert sum(kept_low) < 0.7 * sum(kept_default)
    if heads:
        for a, b in zip(low.get_attention(atoms), default.get_attention(atoms)):
            np.testing.assert_allclose(a["weights"], b["weights"], rtol=1e-12, atol=1e-14)
    lonely = cluster()  # an atom far from the rest: no edges, a group of its own
    lonely.positions[-1] += 20.0
    _assert_same_efs(lonely, low, default, energy=(1e-12, 1e-10), rest=(1e-10, 1e-12))
    with pytest.raises(ValueError, match="low_memory needs the eager model"):
        AttnMACECalculator(path, low_memory=True, torchscript=True)
    with pytest.raises(ValueError, match="low_memory needs the eager model"):
        AttnMACECalculator(path, low_memory=True, compile=True)
    with pytest.raises(ValueError, match="edges_per_chunk must be >= 0"):
        checkpoint_edges(low.model, -1)


def test_parameters_record_the_model_in_trajectories_and_databases(model_file, tmp_path):
    import ase.db
    from ase.io import Trajectory, read

    calc = AttnMACECalculator(model_file, dtype="float32")
    expected = {"model": str(model_file), "dtype": "float32", "species": ["C"], "cutoffs": [2.2, 3.0]}
    assert calc.todict() == expected
    assert AttnMACECalculator(tiny_model(2)).todict()["model"] == "AttnMACE model object"
    atoms = diamond()
    atoms.calc = calc
    atoms.get_forces()
    with Trajectory(tmp_path / "run.traj", "w") as trajectory:
        trajectory.write(atoms)
    assert read(tmp_path / "run.traj").calc.parameters == expected
    with ase.db.connect(tmp_path / "runs.db") as db:
        db.write(atoms)
    assert ase.db.connect(tmp_path / "runs.db").get(1).calculator_parameters == expected
    # set() keeps ASE's behaviour for the rest, but cannot swap what the calculator was made with
    calc.set(dtype="float32")
    assert "forces" in calc.results  # no change, no reset
    with pytest.raises(ValueError, match="dtype cannot be changed with set"):
        calc.set(dtype="float64")
    with pytest.raises(ValueError, match="model cannot be changed"):
        calc.set(model="gap20.pt")
    # unknown names are refused as the constructor's are; the device is fixed; the skin may change
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['dtpye'\]"):
        calc.set(dtpye="float64")
    assert "dtpye" not in calc.parameters
    calc.set(device="cpu")  # its own device: allowed
    with pytest.raises(ValueError):
        calc.set(device="cuda:7")  # unavailable or another device: refused either way
    energy = atoms.get_potential_energy()
    calc.set(skin=0.0)
    assert calc.neighbours.skin == 0.0 and "skin" not in calc.parameters
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-6)
    with pytest.raises(ValueError, match="skin must be a finite number"):
        calc.set(skin=-1.0)

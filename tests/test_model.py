"""Physics of the model (METHOD.md section 5): symmetry, gradients, smoothness, extensivity."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import make_supercell
from helpers import cluster, diamond, random_rotation, tiny_model, triclinic

from attnmace import build_model, count_parameters, keys
from attnmace.config import ModelConfig, make_config
from attnmace.graph import atoms_to_graph


def evaluate(model, atoms, stress=False):
    data = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    out = model(data, compute_forces=True, compute_stress=stress)
    return {k: v.detach().numpy() for k, v in out.items()}


def energy_gradcheck(model, atoms, atol=1e-6):
    """Float64 gradcheck of the energy with respect to the positions."""
    data = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    positions = data[keys.POSITIONS].clone().requires_grad_(True)
    return torch.autograd.gradcheck(
        lambda pos: model({**data, keys.POSITIONS: pos}, compute_forces=False)[keys.ENERGY],
        (positions,),
        eps=1e-6,
        atol=atol,
    )


def rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-12)


@pytest.mark.parametrize("heads", [0, 2])
def test_rotation_reflection_translation(structure, heads):
    model = tiny_model(heads)
    ref = evaluate(model, structure)
    for improper in (False, True):
        rot = random_rotation(5) * (-1.0 if improper else 1.0)
        moved = structure.copy()
        moved.positions = structure.positions @ rot.T + np.array([0.3, -1.2, 2.5])
        moved.cell = structure.cell.array @ rot.T
        out = evaluate(model, moved)
        assert rel(out[keys.ENERGY], ref[keys.ENERGY]) < 1e-10
        assert rel(out[keys.FORCES], ref[keys.FORCES] @ rot.T) < 1e-10


@pytest.mark.parametrize("heads", [0, 2])
def test_permutation(structure, heads):
    model = tiny_model(heads)
    ref = evaluate(model, structure)
    perm = np.random.default_rng(0).permutation(len(structure))
    out = evaluate(model, structure[perm])
    assert rel(out[keys.ENERGY], ref[keys.ENERGY]) < 1e-10
    assert rel(out[keys.FORCES], ref[keys.FORCES][perm]) < 1e-10
    assert rel(out[keys.NODE_ENERGY], ref[keys.NODE_ENERGY][perm]) < 1e-10


def test_lattice_vector_change():
    """The same crystal described by another cell (unimodular transformation, wrapped)."""
    model = tiny_model()
    atoms = triclinic()
    ref = evaluate(model, atoms)
    other = make_supercell(atoms, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])  # det = 1
    other.wrap()
    order = np.lexsort(np.round(atoms.positions, 6).T)
    out = evaluate(model, other)
    assert rel(out[keys.ENERGY], ref[keys.ENERGY]) < 1e-10
    # match atoms by fractional position modulo the lattice
    frac_ref = atoms.cell.scaled_positions(atoms.positions) % 1.0
    frac_new = atoms.cell.scaled_positions(other.positions) % 1.0
    diff = (frac_ref[:, None] - frac_new[None] + 0.5) % 1.0 - 0.5
    match = np.abs(diff).sum(-1).argmin(axis=1)
    assert sorted(match) == list(range(len(atoms))), order
    assert rel(out[keys.FORCES][match], ref[keys.FORCES]) < 1e-10


def test_supercell_extensive():
    model = tiny_model()
    atoms = diamond()
    ref = evaluate(model, atoms, stress=True)
    big = atoms * (2, 1, 2)
    out = evaluate(model, big, stress=True)
    assert rel(out[keys.ENERGY], 4 * ref[keys.ENERGY]) < 1e-10
    assert rel(out[keys.FORCES], np.tile(ref[keys.FORCES], (4, 1))) < 1e-9
    assert rel(out[keys.STRESS], ref[keys.STRESS]) < 1e-9


def test_forces_are_gradient_gradcheck():
    """Float64 gradcheck of the energy with respect to positions (and forces = -dE/dx)."""
    model = tiny_model()
    atoms = cluster()[:6]
    data = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    positions = data[keys.POSITIONS].clone().requires_grad_(True)

    def energy(pos):
        return model({**data, keys.POSITIONS: pos}, compute_forces=False)[keys.ENERGY]

    assert torch.autograd.gradcheck(energy, (positions,), eps=1e-6, atol=1e-7)
    forces = model({**data, keys.POSITIONS: positions.detach().clone()})[keys.FORCES]
    grad = torch.autograd.grad(energy(positions).sum(), positions)[0]
    assert torch.allclose(forces, -grad, atol=1e-12)


def test_layer_energies_sum_to_energy():
    model = tiny_model()
    out = evaluate(model, diamond())
    e0 = model.e0s[0].item() + model.shift.item()
    assert out[keys.LAYER_ENERGY].shape == (8, 2)
    total = out[keys.LAYER_ENERGY].sum(1) + e0 + out[keys.REPULSION_ENERGY]
    assert np.allclose(total, out[keys.NODE_ENERGY], atol=1e-12)
    assert np.isclose(out[keys.NODE_ENERGY].sum(), out[keys.ENERGY][0])


@pytest.mark.parametrize("heads", [0, 2])
@pytest.mark.parametrize("layer_cutoff", [2.2, 3.0])
def test_smooth_when_neighbour_crosses_cutoff(heads, layer_cutoff):
    """Energy and forces are continuous as a neighbour crosses each layer's cutoff."""
    model = tiny_model(heads, cutoffs=(2.2, 3.0))
    atoms = cluster()[:4]
    atoms.positions -= atoms.positions[0]
    direction = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])
    far = atoms[:1].copy()
    far.positions[0] = 0.0

    def place(r):
        a = atoms.copy()
        a += far
        a.positions[-1] = direction * r  # the last atom sits at distance r from atom 0
        return a

    # make sure only the pair (0, last) crosses the cutoff in the scanned window
    energies, forces = [], []
    radii = layer_cutoff + np.array([-2e-4, -1e-4, -1e-6, 1e-6, 1e-4, 2e-4])
    for r in radii:
        a = place(r)
        d = np.linalg.norm(a.positions[:-1] - a.positions[-1], axis=1)
        assert np.abs(d[1:] - layer_cutoff).min() > 1e-2
        out = evaluate(model, a)
        energies.append(out[keys.ENERGY][0])
        forces.append(out[keys.FORCES])
    energies, forces = np.array(energies), np.array(forces)
    # across the cutoff (2e-6 Å) the energy changes as the local slope predicts: no jump
    slope = (energies[4] - energies[1]) / (radii[4] - radii[1])
    jump = energies[3] - energies[2] - slope * (radii[3] - radii[2])
    assert abs(jump) < 1e-11
    # forces change across the cutoff no more than over a step of 1e-4 Å inside it
    assert np.abs(forces[3] - forces[2]).max() <= np.abs(forces[1] - forces[0]).max() + 1e-10


def test_presets_match_paper_table_1():
    """Presets reproduce Table 1's hyperparameters; parameter counts are within 20% of the paper."""
    base = build_model("baseline", species=["C"])
    attn = build_model("attention", species=["C"])
    assert (base.config.channels, base.config.heads, base.config.max_l, base.config.num_layers) == (64, 0, 3, 3)
    assert (attn.config.channels, attn.config.heads, attn.config.max_l, attn.config.num_layers) == (16, 4, 3, 3)
    assert abs(count_parameters(base) / 616e3 - 1) < 0.2
    assert abs(count_parameters(attn) / 163e3 - 1) < 0.2
    assert count_parameters(attn) < count_parameters(base) / 3


def test_full_preset_runs_and_is_equivariant():
    model = build_model("attention", species=["Li", "C"], cutoffs=(3.0, 4.0, 4.0), seed=1)
    atoms = cluster()[:8]
    atoms.numbers[:2] = 3
    ref = evaluate(model, atoms)
    rot = random_rotation(3)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T
    out = evaluate(model, moved)
    assert rel(out[keys.ENERGY], ref[keys.ENERGY]) < 1e-10
    assert rel(out[keys.FORCES], ref[keys.FORCES] @ rot.T) < 1e-9


def test_species_matter():
    model = tiny_model(species=("Li", "C"))
    atoms = cluster()
    e_c = evaluate(model, atoms)[keys.ENERGY]
    atoms.numbers[0] = 3
    assert not np.isclose(evaluate(model, atoms)[keys.ENERGY], e_c)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge", species=["C"])
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        build_model("attention", species=["C"], chanels=3)
    with pytest.raises(ValueError, match="unknown chemical symbol"):
        build_model("attention", species=["Cx"])
    with pytest.raises(ValueError, match="one value per layer"):
        build_model("attention", species=["C"], cutoffs=(3.0, 4.0), correlation=(3, 3, 3))
    with pytest.raises(ValueError, match="cutoffs"):
        build_model("attention", species=["C"], cutoffs=(3.0, -1.0))
    with pytest.raises(ValueError, match="attn_logit_cap must be 0 \\(no cap\\) or a positive number"):
        build_model("attention", species=["C"], attn_logit_cap=-2.0)


def test_plain_softmax_would_jump(monkeypatch):
    """Negative control for the smoothness test: without the envelope the energy jumps."""
    import attnmace.nn.attention as attention

    model = tiny_model(2, cutoffs=(2.2, 3.0))
    atoms = cluster()[:4]
    atoms.positions -= atoms.positions[0]
    direction = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])

    def energy(r):
        a = atoms.copy()
        a += atoms[:1]
        a.positions[-1] = direction * r
        return evaluate(model, a)[keys.ENERGY][0]

    smooth = attention.smooth_attention
    monkeypatch.setattr(attention, "smooth_attention", lambda lg, env, rec, n: smooth(lg, torch.ones_like(env), rec, n))
    assert abs(energy(2.2 + 1e-6) - energy(2.2 - 1e-6)) > 1e-6


def test_repulsion_forces_and_smoothness_at_short_range():
    """With ZBL active (a pair at 0.7 Å) forces are still -dE/dx and the switch-off is smooth."""
    from ase.data import covalent_radii

    model = tiny_model()
    atoms = cluster()[:4]
    atoms.positions[1] = atoms.positions[0] + [0.7, 0.0, 0.0]
    ref = evaluate(model, atoms)
    assert ref[keys.REPULSION_ENERGY].sum() > 1.0
    assert energy_gradcheck(model, atoms)
    rc = 0.6 * 2 * covalent_radii[6]
    energies = []
    for r in (rc - 1e-6, rc + 1e-6):
        atoms.positions[1] = atoms.positions[0] + [r, 0.0, 0.0]
        energies.append(evaluate(model, atoms)[keys.REPULSION_ENERGY].sum())
    assert abs(energies[0]) < 1e-12 and energies[1] == 0


def test_repulsion_can_be_switched_off():
    plain = build_model(
        None,
        species=["C"],
        cutoffs=(2.0,),
        pair_repulsion=False,
        channels=2,
        max_l=1,
        sh_max_l=1,
        heads=0,
        correlation=1,
        radial_mlp=(4,),
    )
    assert type(plain.repulsion).__name__ == "NoRepulsion"
    atoms = cluster()[:3]
    atoms.positions[1] = atoms.positions[0] + [0.5, 0.0, 0.0]
    assert evaluate(plain, atoms)[keys.REPULSION_ENERGY].sum() == 0


def _with_inner(model, inner):
    from attnmace.model import with_inner_cutoffs

    return with_inner_cutoffs(model, model.config, inner)


def test_inner_cutoffs_change_nothing_at_or_beyond_them():
    model = tiny_model(species=("Li", "C"))
    atoms = diamond()
    atoms.numbers[0] = 3  # no Li-Li pair within the plain ZBL term's reach (1.54 Å), which a handover drops
    shortest = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)].min()
    inner = [[shortest] * 2] * 2  # every pair at or beyond its inner cutoff
    with pytest.warns(UserWarning, match="Li-Li"):  # the plain term's 1.54 Å: no Li-Li pair here
        floored = _with_inner(model, inner)
    ref, out = evaluate(model, atoms, stress=True), evaluate(floored, atoms, stress=True)
    for key in (keys.ENERGY, keys.FORCES, keys.STRESS):
        assert np.abs(out[key] - ref[key]).max() < 1e-12, key


def test_below_the_inner_cutoff_the_network_adds_no_force_along_the_pair():
    """A dimer: below ``inner - width`` the energy is a constant plus the full ZBL term, so it only
    rises as the atoms approach (no energy hole), and forces stay -dE/dx through the window."""
    from attnmace.nn import ZBLRepulsion

    model = tiny_model()
    floored = _with_inner(model, [[1.0]])
    zbl = ZBLRepulsion([6], factor=100.0).double()  # envelope far away: the unswitched formula

    def dimer(r):
        return Atoms("C2", positions=[[0, 0, 0], [r, 0, 0]])

    def network(r):
        out = evaluate(floored, dimer(r))
        return float(out[keys.ENERGY].sum() - out[keys.REPULSION_ENERGY].sum()), out

    frozen = [network(r)[0] for r in (0.3, 0.6, 0.85, 0.9)]
    assert max(frozen) - min(frozen) < 1e-12
    curve = [float(evaluate(floored, dimer(r))[keys.ENERGY].sum()) for r in np.linspace(0.2, 0.9, 15)]
    assert np.all(np.diff(curve) < 0)  # falls with distance: repulsive all the way in
    _, out = network(0.5)
    lengths = torch.tensor([0.5, 0.5], dtype=torch.float64)
    full = float(zbl(torch.zeros(2, dtype=torch.long), torch.tensor([0, 1]), torch.tensor([1, 0]), lengths).sum())
    assert abs(out[keys.REPULSION_ENERGY].sum() - full) < 1e-6 * full  # float32-built constants
    atoms = dimer(0.95)  # inside the window
    atoms += Atoms("C", positions=[[0.4, 1.3, 0.2]])
    assert energy_gradcheck(floored, atoms)


def test_inner_cutoff_errors_name_the_problem():
    base = dict(species=["Li", "C"], cutoffs=(2.0,))
    with pytest.raises(ValueError, match="2x2 matrix"):
        make_config(**base, inner_cutoffs=[[1.0]])
    with pytest.raises(ValueError, match="symmetric: Li-C 1.2 but 1.1"):
        make_config(**base, inner_cutoffs=[[1.5, 1.2], [1.1, 1.0]])
    with pytest.raises(ValueError, match="Li-Li must exceed inner_width"):
        make_config(**base, inner_cutoffs=[[0.05, 1.2], [1.2, 1.0]])
    with pytest.raises(ValueError, match="below every layer cutoff"):
        make_config(**base, inner_cutoffs=[[2.5, 1.2], [1.2, 1.0]])
    with pytest.raises(ValueError, match="needs pair_repulsion"):
        make_config(**base, inner_cutoffs=[[1.5, 1.2], [1.2, 1.0]], pair_repulsion=False)
    config = make_config(**base, inner_cutoffs=[[1.5, 1.2], [1.2, 1.0]])
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_head_on_collision_through_the_hand_over_conserves_energy():
    """NVE: two atoms fired at each other turn round below the inner cutoff's window (0.9-1.0 Å)
    and fly apart. The total energy's error is the integrator's, second order in the time step
    (a kink in the hand-over would make it first order), and vanishes once they are apart."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from attnmace import AttnMACECalculator

    calc = AttnMACECalculator(_with_inner(tiny_model(), [[1.0]]), device="cpu")
    worst = {}
    for dt in (0.02, 0.01):
        atoms = Atoms("C2", positions=[[0, 0, 0], [1.6, 0, 0]], cell=[12, 12, 12], pbc=False)
        atoms.center()
        atoms.calc = calc
        speed = np.sqrt(30.0 / atoms.get_masses()[0])  # 30 eV of kinetic energy
        atoms.set_velocities([[speed, 0, 0], [-speed, 0, 0]])
        start, closest, errors = atoms.get_total_energy(), 9.0, []
        dyn = VelocityVerlet(atoms, dt * units.fs)
        for _ in range(round(6.0 / dt)):  # 6 fs
            dyn.run(1)
            errors.append(abs(atoms.get_total_energy() - start))
            closest = min(closest, atoms.get_distance(0, 1))
        assert closest < 0.85 and atoms.get_distance(0, 1) > 1.0  # through the window and back out
        assert errors[-1] < 2e-3  # eV, of 30 eV
        worst[dt] = max(errors)
    assert 3.0 < worst[0.02] / worst[0.01] < 5.0


def test_logit_cap_keeps_forces_the_gradient_and_energy_smooth_at_the_cutoffs():
    """A capped model (c = 0.3: the tiny model's logits reach past it) still has forces = -dE/dx,
    is equivariant and is continuous as a neighbour crosses each layer's cutoff."""
    from attnmace.model import with_logit_cap

    base = tiny_model()
    model = with_logit_cap(base, base.config, 0.3)
    atoms = cluster()[:6]
    assert not np.isclose(evaluate(model, atoms)[keys.ENERGY], evaluate(base, atoms)[keys.ENERGY])  # it acts
    data = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    positions = data[keys.POSITIONS].clone().requires_grad_(True)

    def energy(pos):
        return model({**data, keys.POSITIONS: pos}, compute_forces=False)[keys.ENERGY]

    assert torch.autograd.gradcheck(energy, (positions,), eps=1e-6, atol=1e-7)
    rot = random_rotation(3)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    a, b = evaluate(model, atoms), evaluate(model, turned)
    assert np.isclose(a[keys.ENERGY], b[keys.ENERGY], rtol=1e-12, atol=1e-12)
    assert np.allclose(a[keys.FORCES] @ rot.T, b[keys.FORCES], atol=1e-10)
    centre = cluster()[:4]
    centre.positions -= centre.positions[0]
    direction = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])
    for cutoff in model.config.cutoffs:
        radii, energies = cutoff + np.array([-1e-4, -1e-6, 1e-6, 1e-4]), []
        for r in radii:
            moved = centre + centre[:1]
            moved.positions[-1] = direction * r  # crosses the cutoff of atom 0 among three neighbours
            energies.append(evaluate(model, moved)[keys.ENERGY][0])
        slope = (energies[3] - energies[0]) / (radii[3] - radii[0])
        assert abs(energies[2] - energies[1] - slope * (radii[2] - radii[1])) < 1e-11  # no jump
    with pytest.raises(ValueError, match="no attention heads"):
        with_logit_cap(tiny_model(0), tiny_model(0).config, 1.0)

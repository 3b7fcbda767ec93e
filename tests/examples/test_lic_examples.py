"""The Li–C examples (examples/lic: voltage, interlayer, neb, diffusion) on synthetic data and a tiny model."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import units
from helpers import tiny_model

from attnmace import AttnMACECalculator

LIC = Path(__file__).parents[2] / "examples" / "lic"
sys.path.insert(0, str(LIC))  # the scripts import common.py and structures.py from their folder

import common  # noqa: E402
import diffusion  # noqa: E402
import interlayer  # noqa: E402
import neb  # noqa: E402
import voltage  # noqa: E402


def _lic_module(name):
    """Import ``examples/lic/<name>.py`` under a unique name (other example folders reuse names)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"lic_example_{name}", LIC / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {"voltage": voltage, "interlayer": interlayer, "neb": neb, "diffusion": diffusion}


@pytest.fixture(scope="module")
def calc():
    return AttnMACECalculator(tiny_model(2, species=("Li", "C"), cutoffs=(2.2, 3.0)), device="cpu")


# ----------------------------------------------------------------------------------- structures
def test_builders_stoichiometry():
    assert common.composition(common.lic6()) == (1, 6)
    assert common.composition(common.lic12()) == (1, 12)
    assert common.composition(common.graphite_ab()) == (0, 4)
    assert common.composition(common.li_bcc()) == (2, 0)
    assert common.li_per_c6(common.lic6()) == 1.0 and common.li_per_c6(common.lic12()) == 0.5
    expected = {"LiC8": 0.75, "LiC16_AA": 0.375, "LiC18": 1 / 3, "LiC24": 0.25, "LiC24_AAB": 0.25}
    assert {name: common.li_per_c6(common.dilute(name)) for name in common.DILUTE} == pytest.approx(expected)
    assert common.li_bcc(3.5).cell.lengths() == pytest.approx([3.5] * 3)
    assert common.lic6(a=4.4).cell.lengths()[:2] == pytest.approx([4.4, 4.4])


def test_vacancy_supercell_one_vacancy_per_gallery():
    cell = common.lic6_vacancy_supercell((2, 2, 2), vacancies=2)
    assert common.composition(cell) == (6, 48)
    sites = cell.info["vacancy_sites"]
    assert sites.shape == (2, 3) and abs(sites[0, 2] - sites[1, 2]) == pytest.approx(common.D_LIC6)
    li = cell.positions[cell.numbers == 3]
    gap = np.linalg.norm(common.mic_vectors((li[:, None] - sites[None]).reshape(-1, 3), cell), axis=1)
    assert gap.min() > 4.0  # no Li left on a vacancy site


@pytest.mark.parametrize("d", [3.2, 3.35, 3.7])
def test_interlayer_spacing_equals_input(d):
    assert interlayer.interlayer_spacing(common.graphite_ab(d=d)) == pytest.approx(d)  # c/2
    assert interlayer.interlayer_spacing(common.lic6(d=d)) == pytest.approx(d)  # c
    assert interlayer.interlayer_spacing(common.lic12(c=2 * d)) == pytest.approx(d)  # mean of two galleries
    straddling = common.graphite_ab(d=d)  # layers at c/4 and 3c/4 -> at c/2 and c, one atom each side of c
    straddling.positions[:, 2] += 0.5 * d + np.array([0.0, 0.0, -0.01, 0.01])[np.argsort(straddling.positions[:, 2])]
    straddling.wrap()
    assert np.ptp(straddling.positions[:, 2]) > 2 * d - 0.1  # the top layer is split by the boundary
    assert interlayer.interlayer_spacing(straddling) == pytest.approx(d)


# ----------------------------------------------------------------------------- hull and voltages
def test_lower_hull_picks_the_right_points():
    x = [1.0, 0.25, 0.0, 0.5, 0.75, 0.5, 0.125]
    e = [-0.2, -0.02, 0.0, -0.12, -0.1, -0.05, -0.03]  # (0.125, -0.03) is on the segment 0 -> 0.5
    hull = voltage.lower_hull(x, e)
    assert hull.tolist() == [2, 3, 0]
    assert voltage.energy_above_hull(x, e, np.take(x, hull), np.take(e, hull)) == pytest.approx(
        [0, 0.04, 0, 0, 0.06, 0.07, 0]
    )
    assert voltage.lower_hull([0, 0.5, 1], [0, 0.3, 0.1]).tolist() == [0, 2]  # unstable middle point


def test_voltages_from_a_known_hull():
    steps = voltage.hull_voltages([0.0, 0.5, 1.0], [0.0, -0.1, -0.15])
    assert np.array(steps) == pytest.approx(np.array([(0.0, 0.5, 0.2), (0.5, 1.0, 0.1)]))
    assert voltage.average_voltage([0.0, 0.5, 1.0], [0.0, -0.1, -0.15], 0.25, 0.75) == pytest.approx(0.15)


def test_formation_energy_per_c6():
    mu_li, e_c, e_f = -1.9, -9.2, -0.25
    x, got = voltage.formation_energy(2 * mu_li + 12 * e_c + 2 * e_f, 2, 12, mu_li, e_c)  # Li2C12 = 2 LiC6
    assert (x, got) == pytest.approx((1.0, e_f))
    x, got = voltage.formation_energy(mu_li + 12 * e_c + 2 * e_f, 1, 12, mu_li, e_c)
    assert (x, got) == pytest.approx((0.5, e_f))


# ------------------------------------------------------------------------------------- diffusion
@pytest.mark.parametrize("axes, dim", [((0, 1), 2), ((0, 1, 2), 3)])
def test_msd_recovers_random_walk_diffusion_coefficient(axes, dim):
    rng = np.random.default_rng(1)
    d_true, dt, frames, atoms = 0.01, 10.0, 400, 300  # Å^2/fs, fs
    steps = rng.normal(0.0, np.sqrt(2 * d_true * dt), size=(frames, atoms, 3))
    positions = np.cumsum(steps, axis=0)
    values = diffusion.msd(positions, axes=axes)
    times = np.arange(len(values)) * dt
    assert len(values) == frames // 2 + 1 and values[0] == 0
    assert values[-1] == pytest.approx(2 * dim * d_true * times[-1], rel=0.1)
    d = diffusion.diffusion_coefficient(times, values, dim=dim)
    assert d == pytest.approx(d_true * 0.1, rel=0.05)  # 1 Å^2/fs = 0.1 cm^2/s


def test_arrhenius_fit_recovers_activation_energy():
    t = np.array([600.0, 800.0, 1000.0, 1200.0])
    ea, d0 = 0.35, 2e-3
    d = d0 * np.exp(-ea / (units.kB * t))
    assert diffusion.arrhenius_fit(t, d) == pytest.approx((ea, d0), rel=1e-8)
    noisy = d * np.exp(np.random.default_rng(0).normal(0, 0.02, len(t)))
    assert diffusion.arrhenius_fit(t, noisy)[0] == pytest.approx(ea, abs=0.02)
    d[0] = -1e-9  # no diffusion measured at the lowest temperature: left out
    assert diffusion.arrhenius_fit(t, d) == pytest.approx((ea, d0), rel=1e-8)
    with pytest.raises(ValueError, match="two or more"):
        diffusion.arrhenius_fit(t[:2], [1e-6, 0.0])


def test_count_hops_counts_site_changes_only():
    atoms = common.lic6_vacancy_supercell((2, 2, 1), vacancies=1)
    li = atoms.positions[atoms.numbers == 3]
    sites = np.concatenate([li, atoms.info["vacancy_sites"]])
    vacancy = sites[-1]
    k = int(np.argmin(np.linalg.norm(common.mic_vectors(li - vacancy, atoms), axis=1)))
    hop = common.mic_vectors(vacancy - li[k], atoms)[0]
    rng = np.random.default_rng(0)
    path = [0.0, 0.1, 0.5, 0.9, 1.0, 0.6, 1.0, 0.0]  # to the vacancy, half back (no hop), and home again
    frames = []
    for t in path:
        frame = li + rng.normal(0.0, 0.1, li.shape)  # vibrations do not count
        frame[k] = li[k] + t * hop
        frames.append(frame)
    hops = diffusion.count_hops(np.array(frames), sites, atoms)
    assert hops.tolist() == [2 if i == k else 0 for i in range(len(li))]
    # a whole cell vector later (an unwrapped trajectory) is the same site
    shifted = np.array(frames) + atoms.cell[0]
    assert diffusion.count_hops(shifted, sites, atoms).tolist() == hops.tolist()


def test_hexagon_centres_of_a_vacancy_cell_are_every_empty_and_filled_centre():
    cell = common.lic6_vacancy_supercell((2, 2, 1), vacancies=1)
    centres = diffusion.hexagon_centres(cell)
    assert len(centres) == 12  # 24 carbons per layer, one centre per two carbons
    carbon = cell.positions[cell.numbers == 6]
    for centre in centres:  # six carbons at 1.42 Å in-plane around each
        d = np.linalg.norm(common.mic_vectors(carbon - centre, cell)[:, :2], axis=1)
        assert (np.abs(d - 1.43) < 0.05).sum() == 6
    gaps = [np.sort(np.linalg.norm(common.mic_vectors(centres - c, cell), axis=1))[1] for c in centres]
    assert gaps == pytest.approx([4.31 / np.sqrt(3)] * 12, abs=0.01)


def test_dft_hop_check_reads_the_labelled_path(calc, tmp_path):
    from ase.io import write

    cell = common.lic6_vacancy_supercell((2, 1, 1), vacancies=1)
    frames = []
    for k, energy in enumerate([-5.0, -4.6, -4.7]):
        image = cell.copy()
        image.positions[0, 0] += 0.2 * k
        image.info.update(hop="LiC6_vacancy", image=k, images=5, REF_energy=energy)
        frames.append(image)
    other = cell.copy()
    other.info.update(hop="LiC8", image=0, images=5, REF_energy=-1.0)
    write(tmp_path / "data.extxyz", [*frames, other], format="extxyz")
    check = common.dft_hop_check(calc, data=tmp_path / "data.extxyz")
    assert check["images"] == [0, 1, 2] and check["dft_barrier"] == pytest.approx(0.4)
    assert len(check["model"]) == 3 and check["model"][0] == 0.0
    assert common.dft_hop_check(calc, data=tmp_path / "missing.extxyz") is None
    assert common.dft_hop_check(calc, hop="LiC18", data=tmp_path / "data.extxyz") is None


def test_hop_diffusion_and_its_arrhenius_fit():
    # 10 hops of 4 Å by 2 atoms in 1000 fs in 2D: D = 10 * 16 / (4 * 2 * 1000) Å^2/fs = 0.02 Å^2/fs
    assert diffusion.hop_diffusion(10, 2, 1000.0, 4.0) == pytest.approx(0.002)  # cm^2/s
    t = np.array([1000.0, 1200.0, 1400.0])
    ea, d0 = 0.4, 1e-2
    d = d0 * np.exp(-ea / (units.kB * t))
    fit = diffusion.hop_arrhenius(t, d, [4, 9, 16])
    assert (fit["Ea"], fit["D0"]) == pytest.approx((ea, d0), rel=1e-8)
    two = diffusion.hop_arrhenius(t, d, [0, 9, 16])  # no hop at 1000 K: left out
    assert two["Ea"] == pytest.approx(ea, rel=1e-8)
    # two points: var(slope) = (1/9 + 1/16) / (1/1200 - 1/1400)^2
    expected = np.sqrt(1 / 9 + 1 / 16) / (1 / 1200 - 1 / 1400) * units.kB
    assert two["Ea_error"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="two or more"):
        diffusion.hop_arrhenius(t, d, [0, 0, 3])


def test_md_returns_unwrapped_li_positions(calc):
    atoms = common.lic6_vacancy_supercell((2, 1, 1), vacancies=1)
    atoms.calc = calc
    times, positions = diffusion.run_md(atoms, 800.0, steps=6, timestep=1.0, interval=2, equilibration=2)
    assert times.tolist() == [0, 2, 4, 6] and positions.shape == (4, 1, 3)
    assert np.abs(positions[-1] - positions[0]).max() > 0  # they move


# ---------------------------------------------------------------------------- relaxation and NEB
def test_relax_runs_with_tiny_model(calc):
    atoms = common.lic12()
    atoms.calc = calc
    record = common.relax(atoms, fmax=1e-8, steps=2, cell=True)
    assert record["steps"] == 2 and not record["converged"] and np.isfinite(record["energy"])
    assert atoms.cell.lengths() != pytest.approx(common.lic12().cell.lengths(), abs=1e-9)  # the cell moved


def test_hop_geometry_and_neb_with_three_images(calc):
    cell = common.lic6_vacancy_supercell((2, 1, 1), vacancies=1)  # 13 atoms, one Li
    initial, final, index = neb.hop_endpoints(cell)
    p0, p1 = initial.positions[index], final.positions[index]
    assert common.mic_vectors(p1 - cell.info["vacancy_sites"][0], cell) == pytest.approx(np.zeros((1, 3)), abs=1e-9)
    assert np.linalg.norm(p1 - p0) == pytest.approx(common.A_LIC6)  # neighbouring Li sites
    via = neb.intermediate_hollow(initial, p0, p1)
    assert np.linalg.norm(via - p0) == pytest.approx(common.A_LIC6 / np.sqrt(3))  # an adjacent hexagon centre
    carbon = initial.positions[initial.numbers == 6]
    assert np.linalg.norm(common.mic_vectors(carbon - via, initial)[:, :2], axis=1).min() == pytest.approx(
        common.A_LIC6 / 3, rel=1e-6
    )  # in-plane distance hexagon centre -> C = C-C bond length
    images = neb.make_images(initial, final, 3, index, via)
    assert images[2].positions[index] == pytest.approx(via)
    res = neb.run_neb(images, calc, fmax=1e-8, steps=2)
    assert len(res["energies"]) == len(res["coordinate"]) == 5
    assert res["energies"][0] == 0 and res["steps"] == 2 and np.all(np.diff(res["coordinate"]) > 0)
    assert res["barrier"] == pytest.approx(res["energies"].max())
    straight = neb.run_neb(neb.make_images(initial, final, 3, index), calc, fmax=1e-8, steps=1, idpp=True)
    assert len(straight["energies"]) == 5


# ---------------------------------------------------------------------------------------- scripts
MAIN_ARGS = {
    "voltage": ["--relax-steps", "2"],
    "interlayer": ["--relax-steps", "2", "--scan-points", "3"],
    "neb": ["--relax-steps", "1", "--neb-steps", "1", "--images", "3", "--repeat", "2", "1", "1"],
    "diffusion": ["--steps", "10", "--equilibration", "2", "--interval", "5", "--temperatures", "800", "1200"],
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_main_quick_with_tiny_model(name, calc, tmp_path, capsys):
    png = tmp_path / f"{name}.png"
    res = SCRIPTS[name].main(["--quick", "--plot", str(png), *MAIN_ARGS[name]], calc=calc)
    out = capsys.readouterr().out
    assert png.stat().st_size > 1000 and isinstance(res, dict)
    assert "model" in out and "reference" in out


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_missing_model_exits_with_a_clear_message(name, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        SCRIPTS[name].main(["--quick", "--model", str(tmp_path / "lic.pt")])
    message = str(exit_info.value.code)
    assert "has not been trained" in message and "--model PATH" in message


def test_cli_missing_model_is_not_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(LIC / "voltage.py"), "--quick", "--model", str(tmp_path / "lic.pt")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert proc.returncode != 0
    assert "lic.pt has not been trained" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------ data split
def test_prepare_split_is_stable_and_keeps_reference_cells_in_training(tmp_path):
    import ase.io

    prepare = _lic_module("prepare")  # examples/gap20 has a prepare.py too
    frames = []
    for family in ("lic6", "graphite_ab", "li_bcc"):
        for k in range(60):
            atoms = common.lic6() if family == "lic6" else common.graphite_ab()
            atoms.info.update(structure_id=f"{family}_{k:03d}", family=family, REF_energy=-1.0)
            frames.append(atoms)
    parts = prepare.split(frames)
    assert sum(len(p) for p in parts.values()) == len(frames)
    assert all(prepare.part_of(a) == "train" for a in frames if a.info["structure_id"].endswith("_000"))
    for name in ("test", "valid"):  # about 10 % each
        assert 0.03 < len(parts[name]) / len(frames) < 0.2, name
    # labelling more frames never moves one: splitting a prefix gives the same parts for it
    early = {a.info["structure_id"]: name for name, part in prepare.split(frames[::3]).items() for a in part}
    late = {a.info["structure_id"]: name for name, part in parts.items() for a in part}
    assert all(late[sid] == name for sid, name in early.items())
    data = tmp_path / "labelled.extxyz"
    ase.io.write(data, frames, format="extxyz")
    prepare.main(["--data", str(data), "--output", str(tmp_path / "out")])
    written = {name: ase.io.read(tmp_path / "out" / f"{name}.extxyz", ":") for name in parts}
    assert {name: len(f) for name, f in written.items()} == {name: len(p) for name, p in parts.items()}


def test_scan_minimum_is_the_parabola_vertex():
    d = np.array([3.0, 3.2, 3.35, 3.5, 3.9])
    e = 0.7 * (d - 3.31) ** 2 - 1.0
    assert interlayer.scan_minimum(d[::-1], e[::-1]) == pytest.approx(3.31)
    assert interlayer.scan_minimum(d, -d) == 3.9  # no interior minimum: the lowest end


def test_dft_checks_compare_model_and_reference_on_the_same_cells(calc):
    voltage_check = voltage.dft_check(calc)
    assert set(voltage_check) == {"LiC12", "LiC6"}
    # the reference side is the data's: E_f(LiC6) from the four labelled reference cells
    assert voltage_check["LiC6"][1] == pytest.approx(0.0306, abs=2e-3)
    spacing = interlayer.dft_check(calc)
    assert set(spacing) == {"graphite", "LiC6"}
    assert 3.2 < spacing["graphite"][1] < 3.4 and 3.5 < spacing["LiC6"][1] < 3.8
    # the scan points only (13 spacings of graphite, 6 of LiC6): not the MD snapshots of their family
    assert (spacing["graphite"][2], spacing["LiC6"][2]) == (13, 6)


def test_card_reads_every_number_from_the_run_files(tmp_path):
    import json

    card = _lic_module("card")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "epoch,lr,valid_loss,seconds\n1,0.005,2.0,1800\n2,0.005,0.5,1800\n3,0.004,0.7,1800\n"
    )
    block = {"n_frames": 2, "n_atoms": 9, "energy_rmse_meV_per_atom": 5.123, "forces_rmse_meV_per_A": 99.0}
    evaluation = {"overall": block, "per_config_type": {"LiC6": block}}
    for name in ("test", "valid"):
        (tmp_path / f"{name}.json").write_text(json.dumps(evaluation))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a", "b", "c"], "valid": ["d"], "test": ["e", "f"]}))
    out = tmp_path / "card.json"
    card.main(
        ["--run", str(run), "--test", str(tmp_path / "test.json"), "--valid", str(tmp_path / "valid.json")]
        + ["--split", str(tmp_path / "split.json"), "--output", str(out)]
    )
    written = json.loads(out.read_text())
    assert (written["training"]["epochs"], written["training"]["best_epoch"]) == (3, 2)
    assert written["training"]["wall_time_h"] == 1.5
    assert written["data"]["frames"] == {"train": 3, "valid": 1, "test": 2}
    assert written["metrics"]["test"]["energy_rmse_meV_per_atom"] == 5.12
    assert written["metrics"]["test"]["per_config_type"]["LiC6"]["frames"] == 2
    assert "fine_tuned_from" not in written["training"]
    # a fine-tuned run also records the run it started from
    base = tmp_path / "base"
    base.mkdir()
    (base / "metrics.csv").write_text("epoch,lr,valid_loss,seconds\n1,0.005,1.0,3600\n2,0.004,0.9,3600\n")
    card.main(
        ["--run", str(run), "--test", str(tmp_path / "test.json"), "--valid", str(tmp_path / "valid.json")]
        + ["--split", str(tmp_path / "split.json"), "--output", str(out), "--base-run", str(base)]
        + ["--config", "examples/lic/lic_finetune.yaml"]
    )
    training = json.loads(out.read_text())["training"]
    assert training["config"] == "examples/lic/lic_finetune.yaml"
    assert training["fine_tuned_from"]["config"] == "examples/lic/lic.yaml"
    assert (training["fine_tuned_from"]["epochs"], training["fine_tuned_from"]["best_epoch"]) == (2, 2)
    assert training["total_wall_time_h"] == 1.5 + 2.0


def test_diffusion_reports_a_collapsed_trajectory_and_fits_the_others(calc, monkeypatch, capsys):
    real = diffusion.run_md

    def run_md(atoms, temperature, *args, **kwargs):
        if temperature == 900.0:
            raise ValueError("atoms 7 and 24 are 0.0894 Å apart (less than 0.1 Å): overlapping atoms")
        return real(atoms, temperature, *args, **kwargs)

    monkeypatch.setattr(diffusion, "run_md", run_md)
    res = diffusion.run(calc, temperatures=(900.0, 1000.0, 1400.0), steps=20, equilibration=0, interval=5)
    assert [("failed" in r) for r in res["runs"]] == [True, False, False]
    diffusion.report(res)
    out = capsys.readouterr().out
    assert "T =    900 K: MD stopped" in out and "overlapping atoms" in out

    def broken(*args, **kwargs):
        raise ValueError("something else")

    monkeypatch.setattr(diffusion, "run_md", broken)
    with pytest.raises(ValueError, match="something else"):  # only collapses are reported and skipped
        diffusion.run(calc, temperatures=(900.0,), steps=2, equilibration=0)


@pytest.mark.skipif(not Path("/usr/share/cp2k/BASIS_MOLOPT_UZH").is_file(), reason="needs the cp2k-data package")
def test_uzh_basis_file_renames_the_li_and_c_entries(tmp_path):
    check_formation = _lic_module("check_formation")
    text = Path(check_formation.uzh_basis_file("TZV2P-MOLOPT-PBE-GTH", str(tmp_path))).read_text()
    headers = [line for line in text.splitlines() if line[:1].isalpha()]
    assert headers == ["Li TZV2P-MOLOPT-PBE-GTH", "C TZV2P-MOLOPT-PBE-GTH"]
    assert check_formation.formation_energy(-10.0, -3.0, -1.0) == pytest.approx(-1.0)


def test_dispersion_energy_is_read_from_the_cp2k_output(tmp_path):
    check_formation = _lic_module("check_formation")
    out = tmp_path / "cell.out"
    out.write_text("  Dispersion energy:      -0.1\n  Total energy:   -15.0\n  Dispersion energy:   -0.0123\n")
    assert check_formation.dispersion_energy(str(out)) == pytest.approx(-0.0123 * 27.211386, rel=1e-6)
    out.write_text("  Total energy:   -15.0\n")
    with pytest.raises(ValueError, match="no 'Dispersion energy:' line"):
        check_formation.dispersion_energy(str(out))


def test_attention_map_of_a_li_site(tmp_path):
    attention_map = _lic_module("attention_map")
    cutoffs = (3.0, 4.5)  # reach the Li site's first shell (2.34 Å) and its Li neighbours (4.3 Å)
    calc = AttnMACECalculator(tiny_model(2, species=("Li", "C"), cutoffs=cutoffs), device="cpu")
    res = attention_map.main(["--plot", str(tmp_path / "map.png")], calc=calc)
    assert (tmp_path / "map.png").exists() and res["formula"] == "C12Li"
    assert [(layer["symbol"] == "Li").sum() for layer in res["layers"]] == [0, 6]
    for layer, cutoff in zip(res["layers"], cutoffs):
        assert np.all(np.diff(layer["distance"]) >= 0) and layer["distance"].max() < cutoff
        np.testing.assert_allclose(layer["weights"].sum(axis=0), 1.0, rtol=1e-6)  # softmax per head
        share = attention_map.shares(layer)
        total = share["first_shell"] + share["other_carbon"] + share["lithium"]
        np.testing.assert_allclose(total, 1.0, rtol=1e-6)
        assert share["uniform_first_shell"] == pytest.approx(min(12, len(layer["distance"])) / len(layer["distance"]))

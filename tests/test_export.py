"""TorchScript export: round trip, metadata, versioning and bad files."""

import copy
import json
import zipfile

import numpy as np
import pytest
import torch
from helpers import cluster, diamond, tiny_model

from attnmace import __version__, export_model, keys, load_model, read_metadata, rebuild_eager
from attnmace.export import FORMAT_VERSION, METADATA_FILE
from attnmace.graph import atoms_to_graph


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    export_model(tiny_model(2, species=("Li", "C")), path)
    return path


def test_round_trip_equals_eager(exported):
    model = tiny_model(2, species=("Li", "C"))
    scripted = load_model(exported)
    atoms = diamond()
    atoms.numbers[:2] = 3
    data = atoms_to_graph(atoms, (3, 6), model.r_max)
    eager = model(dict(data), compute_forces=True, compute_stress=True, compute_attention=True)
    loaded = scripted(dict(data), compute_forces=True, compute_stress=True, compute_attention=True)
    assert set(eager) == set(loaded)
    for key in eager:
        assert torch.allclose(eager[key].double(), loaded[key].double(), rtol=1e-12, atol=1e-12), key


def test_loaded_model_casts_to_float32(exported):
    scripted = load_model(exported).to(torch.float32)
    data = atoms_to_graph(cluster(), (3, 6), 3.0, dtype=torch.float32)
    out = scripted(data)
    assert out[keys.FORCES].dtype == torch.float32 and torch.isfinite(out[keys.FORCES]).all()
    assert out[keys.ENERGY].dtype == torch.float64  # the total is accumulated in float64


def test_metadata(exported):
    meta = read_metadata(exported)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["attnmace_version"] == __version__
    assert meta["torch_version"] == torch.__version__
    assert meta["species"] == ["Li", "C"] and meta["atomic_numbers"] == [3, 6]
    assert meta["cutoffs"] == [2.2, 3.0] and meta["r_max"] == 3.0
    assert meta["units"]["energy"] == "eV" and meta["dtype"] == "float64"
    assert meta["config"]["heads"] == 2 and meta["config"]["channels"] == 4


def test_rebuild_eager_has_same_weights(exported):
    model = rebuild_eager(exported)
    ref = tiny_model(2, species=("Li", "C"))
    for (name, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), name


def test_a_file_keeps_the_product_basis_its_weights_were_learned_with(tmp_path):
    """A file exported on a machine whose basis differs (here: the basis vectors
    of every second path with the other sign, an equally valid orthonormal basis) gives its own
    energies when rebuilt."""
    from attnmace import AttnMACECalculator
    from attnmace.nn import SymmetricContraction

    model = copy.deepcopy(tiny_model(2, species=("Li", "C")))  # the helper's model is shared
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, SymmetricContraction):
                block.basis[1::2].neg_()
    path = tmp_path / "other_machine.pt"
    export_model(model, path)
    atoms = diamond()
    energies = {}
    for torchscript in (False, True):
        atoms.calc = AttnMACECalculator(path, device="cpu", torchscript=torchscript)
        energies[torchscript] = atoms.get_potential_energy()
    assert energies[False] == pytest.approx(energies[True], rel=1e-12)
    atoms.calc = AttnMACECalculator(tiny_model(2, species=("Li", "C")), device="cpu")  # this machine's basis
    assert abs(atoms.get_potential_energy() - energies[True]) > 1e-6  # the flip matters
    # an eager model passed to the calculator keeps its basis as well
    atoms.calc = AttnMACECalculator(rebuild_eager(path), device="cpu")
    assert atoms.get_potential_energy() == pytest.approx(energies[True], rel=1e-12)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "nope.pt")


def test_not_a_model(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="not an attnmace model"):
        load_model(bad)
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(plain))
    with pytest.raises(ValueError, match="not an attnmace model"):
        load_model(plain)


def test_truncated_file(exported, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    with pytest.raises(ValueError, match="not an attnmace model|not a readable|could not be loaded"):
        load_model(cut)


def _rewrite_metadata(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(METADATA_FILE):
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


def test_newer_format_is_refused(exported, tmp_path):
    newer = tmp_path / "newer.pt"
    _rewrite_metadata(exported, newer, lambda m: m.update(format_version=FORMAT_VERSION + 1, attnmace_version="9.0"))
    with pytest.raises(ValueError, match=r"written by attnmace 9.0 in file format 2.*upgrade"):
        load_model(newer)


def test_export_needs_eager_model(exported):
    with pytest.raises(TypeError, match="eager AttnMACE"):
        export_model(load_model(exported), exported.parent / "again.pt")


def test_export_is_atomic(tmp_path):
    path = tmp_path / "m.pt"
    export_model(tiny_model(), path)
    assert path.is_file() and not list(tmp_path.glob("*.tmp"))
    assert np.isfinite(read_metadata(path)["r_max"])


def test_no_deprecation_warning_for_users(tmp_path):
    """Importing attnmace and exporting a model do not surface TorchScript's deprecation warning."""
    import subprocess
    import sys

    code = (
        "import attnmace, warnings\n"
        "from attnmace import build_model, export_model\n"
        "m = build_model(None, species=['C'], cutoffs=(2.0,), channels=2, max_l=1, sh_max_l=1, heads=1, "
        "correlation=1, radial_mlp=(4,))\n"
        f"export_model(m, {str(tmp_path / 'w.pt')!r})\n"
        f"calc = attnmace.AttnMACECalculator({str(tmp_path / 'w.pt')!r}, device='cpu')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_inner_cutoffs_survive_export_and_rebuild(tmp_path):
    from attnmace.model import with_inner_cutoffs

    model = tiny_model(2, species=("Li", "C"))
    with pytest.warns(UserWarning, match=r"reached past the inner cutoff of Li-C \(1.22 Å > 1.20 Å\)"):
        floored = with_inner_cutoffs(model, model.config, [[1.6, 1.2], [1.2, 0.95]])
    path = export_model(floored, tmp_path / "inner.pt")
    assert read_metadata(path)["config"]["inner_cutoffs"] == [[1.6, 1.2], [1.2, 0.95]]
    rebuilt = rebuild_eager(path)  # the derived buffers are not weights: the rebuild loads
    assert rebuilt.config == floored.config
    atoms = cluster()[:4]
    atoms.numbers[0] = 3
    atoms.positions[1] = atoms.positions[0] + [1.15, 0.0, 0.0]  # Li-C inside its window
    data = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    energies = [m(dict(data), compute_forces=False)[keys.ENERGY].item() for m in (floored, load_model(path), rebuilt)]
    assert max(energies) - min(energies) < 1e-10
    plain = model(dict(data), compute_forces=False)[keys.ENERGY].item()
    assert abs(energies[0] - plain) > 1e-3  # the window did act here
    removed = with_inner_cutoffs(model, model.config, ())
    assert removed.config == model.config and not removed.inner_handover


def test_logit_cap_survives_export_and_rebuild(tmp_path):
    from attnmace.model import with_logit_cap

    model = tiny_model()
    capped = with_logit_cap(model, model.config, 0.3)
    path = export_model(capped, tmp_path / "capped.pt")
    assert read_metadata(path)["config"]["attn_logit_cap"] == 0.3
    rebuilt = rebuild_eager(path)
    assert rebuilt.config == capped.config
    data = atoms_to_graph(cluster()[:6], model.config.atomic_numbers, model.r_max)
    energies = [m(dict(data), compute_forces=False)[keys.ENERGY].item() for m in (capped, load_model(path), rebuilt)]
    assert max(energies) - min(energies) < 1e-10
    assert abs(energies[0] - model(dict(data), compute_forces=False)[keys.ENERGY].item()) > 1e-6
    removed = with_logit_cap(capped, capped.config, 0.0)
    assert removed.config == model.config
    assert removed(dict(data), compute_forces=False)[keys.ENERGY].item() == pytest.approx(
        model(dict(data), compute_forces=False)[keys.ENERGY].item(), abs=1e-12
    )


def test_export_leaves_the_model_as_it_was(tmp_path):
    """e3nn's scripting compiles submodules in place; the export works on a copy, so the model
    stays eager, in its mode, and copyable (before, a deep copy of an exported model held plain
    tensors instead of parameters)."""
    from attnmace.model import build_model

    model = build_model(config=tiny_model().config).train()
    before = {name: type(module) for name, module in model.named_modules()}
    export_model(model, tmp_path / "m.pt")
    assert model.training and {name: type(module) for name, module in model.named_modules()} == before
    assert all(isinstance(p, torch.nn.Parameter) for p in copy.deepcopy(model).parameters())

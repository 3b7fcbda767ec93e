"""Error metrics of attnmace.train.evaluate on predictions with known errors."""

import numpy as np
import pytest

from attnmace.train.evaluate import compute_metrics


def _pred(n, energy_error, force_error):
    ref_forces = np.ones((n, 3))
    return {
        "num_atoms": n,
        "energy": 10.0 + energy_error * n,
        "ref_energy": 10.0,
        "forces": ref_forces + force_error,
        "ref_forces": ref_forces,
    }


def test_rmse_mae_mean_error_and_groups():
    preds = [_pred(2, 0.010, 0.2), _pred(4, -0.030, 0.0), _pred(2, 0.010, 0.2)]
    metrics = compute_metrics(preds, ["a", "b", "a"])
    overall = metrics["overall"]
    assert overall["n_frames"] == 3 and overall["n_atoms"] == 8
    assert overall["energy_rmse_meV_per_atom"] == pytest.approx(np.sqrt((100 + 900 + 100) / 3))
    assert overall["energy_mae_meV_per_atom"] == pytest.approx(50 / 3)
    assert overall["energy_mean_error_meV_per_atom"] == pytest.approx(-10 / 3)
    assert overall["forces_rmse_meV_per_A"] == pytest.approx(200 * np.sqrt(4 / 8))
    assert metrics["per_config_type"]["a"]["energy_mean_error_meV_per_atom"] == pytest.approx(10.0)
    assert metrics["per_config_type"]["b"]["forces_rmse_meV_per_A"] == pytest.approx(0.0)
    # |ΔF|/|F| = 0.2 for the 4 atoms of "a" (|F| = sqrt(3), |ΔF| = 0.2 sqrt(3)), 0 for the 4 of "b"
    thresholds, fraction = (metrics["force_outliers"][k] for k in ("thresholds", "fraction"))
    assert thresholds[:2] == pytest.approx([0.1, 10 ** (-1 + 1 / 3)])
    assert fraction[:2] == [0.5, 0.0]

"""The linear experiments' configs refuse what they would ignore, and the auxiliary run measures the bounds."""

import dataclasses
import json

import pytest

from exolam.errors import ConfigError
from exolam.experiments import auxiliary, leakage, sensitivity
from exolam.experiments.report import finish
from exolam.runs.rundir import RunDir

TINY_ENV = dict(n_traj=40, n_test_traj=10)


def _tiny(mod, **changes):
    cfg = dataclasses.replace(mod.quick_config(), seeds=2, eval_samples=50, **changes)
    cfg.env = dataclasses.replace(cfg.env, **TINY_ENV)
    cfg.train = dataclasses.replace(cfg.train, steps=40)
    return cfg


@pytest.mark.parametrize("mod,changes,match", [
    (leakage, {"p_switches": ()}, "p_switches is empty"),
    (leakage, {"p_switches": (0.5, 0.5)}, "lists a value twice"),
    (leakage, {"p_switches": (0.5, 1.5)}, r"p_switches\[1\] = 1.5"),
    (sensitivity, {"alphas": ()}, "alphas is empty"),
    (sensitivity, {"alphas": (-1.0,)}, r"alphas\[0\] = -1.0"),
    (auxiliary, {"lambdas": (0.0,)}, "must be > 0"),
    (auxiliary, {"terms": ()}, "terms"),
    (auxiliary, {"terms": ("xexo", "xexo")}, "terms"),
    (leakage, {"device": "xyz"}, "device = 'xyz'"),
    (leakage, {"solver": "xyz"}, "solver = 'xyz'"),
])
def test_bad_sweep_configs_are_refused_before_anything_runs(mod, changes, match):
    with pytest.raises(ConfigError, match=match):
        _tiny(mod, **changes).validate()


@pytest.mark.parametrize("mod,field,value,hint", [
    (leakage, "p_switch", 0.3, "use --p-switches"),
    (sensitivity, "alpha", 2.0, "use --alphas"),
    (auxiliary, "p_switch", 0.3, "use --p-switches"),
])
def test_a_field_the_sweep_sets_is_refused(mod, field, value, hint):
    cfg = _tiny(mod)
    cfg.env = dataclasses.replace(cfg.env, **{field: value})
    with pytest.raises(ConfigError, match=f"env.{field} = {value} is not used: .*{hint}"):
        cfg.validate()


def test_a_batch_that_cannot_be_allocated_is_refused():
    cfg = _tiny(leakage)
    cfg.train = dataclasses.replace(cfg.train, batch_size=10**12)
    with pytest.raises(ConfigError, match="train.batch_size = 1000000000000 needs"):
        cfg.validate()


def test_divergence_names_the_cell_and_records_nothing(tmp_path):
    cfg = _tiny(leakage, p_switches=(0.5,))
    cfg.train = dataclasses.replace(cfg.train, lr=1e12)
    run = RunDir(tmp_path, "leakage").open({})
    with pytest.raises(ConfigError, match=r"p_switch=0.5, seed 0: train.lr = 1e\+12: training diverged"):
        leakage.run(cfg, run)
    assert run.rows() == []


def test_auxiliary_records_both_probes_and_the_bounds(tmp_path):
    cfg = _tiny(auxiliary, p_switches=(0.5,), lambdas=(1.0,))
    run = RunDir(tmp_path, "auxiliary").open({})
    auxiliary.run(cfg, run, log=lambda *_: None)
    finish("auxiliary", auxiliary, cfg, run)
    rows = run.rows()
    assert len(rows) == 8 and {"probe_nmse_given_o", "consistency_var_given_o", "prop48_lhs", "exo_ratio_z"} <= set(rows[0])
    assert all(r["prop48_lhs"] <= r["prop48_rhs"] for r in rows)  # Prop. 4.8 holds for every model
    summary = json.loads((run.path / "summary.json").read_text())
    assert len(summary["models"]) == 8
    names = [c["claim"] for c in auxiliary.claims(summary)]
    assert any(n.startswith("Prop. 4.8") for n in names) and any(n.startswith("Remark 4.3") for n in names)
    auxiliary.plot(summary)

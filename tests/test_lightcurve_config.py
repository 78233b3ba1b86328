"""Stage 4 configuration and prior validation: every malformed declaration raises ConfigError."""

import numpy as np
import pytest

from tsoreduce.errors import ConfigError
from tsoreduce.lightcurve import CONFIG_SCHEMA, ParameterSet, parse_parameter, validate_config

BASE = {"t0": {"value": 0.0, "prior": "uniform", "bounds": [-0.1, 0.1]}, "per": 3.0,
        "rp_rs": {"value": 0.1, "prior": "uniform", "bounds": [0.01, 0.3]},
        "a_rs": {"value": 10.0, "prior": "normal", "sigma": 0.5}, "inc": {"value": 88.0, "prior": "fixed"}}


def _cfg(**over):
    p = dict(BASE)
    p.update(over.pop("parameters", {}))
    return {"parameters": p, **over}


def test_valid_config_fills_defaults():
    cfg = validate_config(_cfg())
    assert cfg["model"] == "transit" and cfg["fitter"]["nsteps"] == 2000
    assert cfg["systematics"]["ramp"] == "single" and cfg["n_processes"] == 2
    assert set(CONFIG_SCHEMA) <= set(cfg)


@pytest.mark.parametrize("decl, match", [
    ({"value": 0.1, "prior": "gaussian", "sigma": 1}, "unknown prior type"),
    ({"value": 0.1, "prior": "uniform", "bounds": [0.3, 0.01]}, "must be below"),
    ({"value": 0.1, "prior": "uniform"}, "needs bounds"),
    ({"value": 0.1, "prior": "uniform", "bounds": [0.01]}, r"\[lower, upper\]"),
    ({"value": 0.1, "prior": "loguniform", "bounds": [0.0, 1.0]}, "0 < lower"),
    ({"value": 0.1, "prior": "normal"}, "needs sigma"),
    ({"value": 0.1, "prior": "normal", "sigma": -1.0}, "> 0"),
    ({"value": 0.5, "prior": "uniform", "bounds": [0.01, 0.3]}, "outside bounds"),
    ({"prior": "fixed"}, "'value'"),
    ({"value": 0.1, "prior": "fixed", "spread": 2}, "unknown key"),
    ({"value": 0.1, "shared": "yes"}, "true/false"),
    ("abc", "number or a mapping"),
])
def test_bad_parameter_declarations(decl, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(_cfg(parameters={"rp_rs": decl}))


def test_unknown_parameter_and_missing_required():
    with pytest.raises(ConfigError, match="not a parameter"):
        validate_config(_cfg(parameters={"albedo": 0.3}))
    with pytest.raises(ConfigError, match="needs fp"):
        validate_config(_cfg(model="eclipse"))
    p = dict(BASE)
    del p["a_rs"]
    with pytest.raises(ConfigError, match="a_rs"):
        validate_config({"parameters": p})


def test_schema_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(_cfg(fitterr={}))
    with pytest.raises(ConfigError, match="not allowed"):
        validate_config(_cfg(model="occultation"))
    with pytest.raises(ConfigError, match="burn_in"):
        validate_config(_cfg(fitter={"nsteps": 100, "burn_in": 100}))
    with pytest.raises(ConfigError, match="quadratic law only"):
        validate_config(_cfg(limb_darkening={"law": "nonlinear", "parametrisation": "kipping"}))
    with pytest.raises(ConfigError, match="not allowed"):
        validate_config(_cfg(systematics={"ramp": "triple"}))


def test_log_prior_vectorised():
    ps = ParameterSet({"a": parse_parameter("a", {"value": 0.5, "prior": "uniform", "bounds": [0, 2]}),
                       "b": parse_parameter("b", {"value": 1.0, "prior": "loguniform", "bounds": [0.1, 10]}),
                       "c": parse_parameter("c", {"value": 3.0, "prior": "normal", "sigma": 2.0}),
                       "d": parse_parameter("d", 7.0)})
    assert ps.free_names == ["a", "b", "c"]
    th = np.array([[0.5, 1.0, 3.0], [2.5, 1.0, 3.0], [0.5, 0.01, 3.0], [0.5, 1.0, 5.0]])
    lp = ps.log_prior(th)
    ref0 = -np.log(2) - np.log(np.log(100)) - np.log(2 * np.sqrt(2 * np.pi))
    assert lp[0] == pytest.approx(ref0)
    assert np.isneginf(lp[1]) and np.isneginf(lp[2])
    assert lp[3] == pytest.approx(ref0 - 0.5)
    full = ps.expand(th)
    assert full.shape == (4, 4) and np.all(full[:, 3] == 7.0)

"""YAML run validation: unknown keys, wrong types, out-of-range values stop a run before any work
and name the key and the allowed values; paths resolve against the YAML file's directory; the
committed runs/template.yaml equals the generated one."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _fake_stages  # noqa: E402

from tsoreduce import config as C  # noqa: E402
from tsoreduce.errors import ConfigError  # noqa: E402

REPO = Path(__file__).parents[1]


@pytest.fixture
def fake(monkeypatch):
    return _fake_stages.install(monkeypatch)


def _write(tmp_path, text, name="run.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_filled_and_paths_relative_to_yaml(fake, tmp_path, monkeypatch):
    sub = tmp_path / "runs"
    sub.mkdir()
    (tmp_path / "data").mkdir()
    for i in (1, 2):
        (tmp_path / "data" / f"x-seg00{i}_uncal.fits").write_text("")
    p = _write(sub, "name: r\noutput_dir: ../out\ninput:\n  uncal: ../data/*_uncal.fits\n")
    monkeypatch.chdir("/")  # the current directory must not matter
    cfg = C.load_run_config(p)
    assert cfg["output_dir"] == str(tmp_path / "out")
    assert [Path(f).name for f in cfg["input"]["uncal"]] == ["x-seg001_uncal.fits", "x-seg002_uncal.fits"]
    assert cfg["stages"] == [1, 2, 3, 4] and cfg["plots"] is True
    assert cfg["stage1"] == {"ramp_fit": {"method": "ols"}, "drop_groups": 1}
    assert cfg["stage4"]["fit"]["nwalkers"] == 16
    # --output-dir overrides, relative to the current directory
    monkeypatch.chdir(tmp_path)
    assert C.load_run_config(p, output_dir="elsewhere")["output_dir"] == str(tmp_path / "elsewhere")


@pytest.mark.parametrize("text, match", [
    ("input: {simulate: {}}\nstage1: {drop_grups: 2}\n", r"stage1\.drop_grups: unknown key; did you mean drop_groups"),
    ("input: {simulate: {}}\nstage1: {drop_groups: 2.5}\n", r"stage1\.drop_groups: got 2\.5 of type float, expected type int"),
    ("input: {simulate: {}}\nstage1: {drop_groups: 11}\n", r"stage1\.drop_groups: 11 is above the maximum 10"),
    ("input: {simulate: {}}\nstage1: {ramp_fit: {method: wls}}\n", r"stage1\.ramp_fit\.method: 'wls' is not allowed; allowed values: 'ols', 'gls'"),
    ("input: {simulate: {nints: -3.5}}\n", r"input\.simulate\.nints: got -3\.5"),
    ("input: {simulate: {nint: 3}}\n", r"input\.simulate\.nint: unknown key; did you mean nints"),
    ("input: {simulate: {}}\nstage: 1-4\n", r"stage: unknown key; did you mean stages"),
    ("input: {simulate: {}}\nstages: 5\n", r"stages: 5 selects stage\(s\) \[5\].*allowed stages for this input: \[1, 2, 3, 4\]"),
    ("input: {simulate: {}}\nstages: one\n", r"stages: 'one' is not a stage specification"),
    ("input: {simulate: {}}\nplots: yes please\n", r"plots: got 'yes please' of type str, expected type bool"),
    ("name: t\n", r"input: missing"),
    ("input: {uncal: a.fits, rateints: b.fits}\n", r"input: give exactly one of"),
    ("input: {uncal: nothing_*.fits}\n", r"input\.uncal: no file matches 'nothing_\*\.fits'.*relative to the YAML"),
    ("input: {rateints: x}\nstages: 1-4\n", r"allowed stages for this input: \[2, 3, 4\]"),
    ("input: {simulate: {}}\nname: a b\n", r"name: 'a b' must be"),
    ("input: [1, 2]\n", r"input: expected a mapping"),
    ("input: {simulate: {}\n", r"not valid YAML"),
])
def test_bad_configs_name_key_and_allowed_values(fake, tmp_path, text, match):
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match=match):
        C.load_run_config(_write(tmp_path, text))


def test_missing_stage_module_only_matters_when_used(fake, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tsoreduce.detector", None)  # import fails
    (tmp_path / "r_rateints.fits").write_text("")
    cfg = C.load_run_config(_write(tmp_path, "input: {rateints: r_rateints.fits}\n"))
    assert cfg["stages"] == [2, 3, 4] and cfg["stage1"] == {}
    with pytest.raises(ConfigError, match="stage1: the stage module tsoreduce.detector cannot be imported"):
        C.load_run_config(_write(tmp_path, "input: {simulate: {}}\n"))


def test_parse_stages():
    assert C.parse_stages("all") == [1, 2, 3, 4]
    assert C.parse_stages("2-3") == [2, 3]
    assert C.parse_stages("1,3") == [1, 3]
    assert C.parse_stages([4, 2]) == [2, 4]
    assert C.parse_stages(4, allowed=(4,)) == [4]
    with pytest.raises(ConfigError):
        C.parse_stages("3-1")


def test_simulate_schema_from_dataclass(fake):
    s = C.simulate_schema()
    assert s["nints"].default == 6 and s["nints"].type is int
    assert s["depth"].type is float and "transit depth" in s["depth"].doc


def test_template_is_valid_and_lists_every_key(fake, tmp_path):
    text = C.render_template()
    p = _write(tmp_path, text, "template.yaml")
    cfg = C.load_run_config(p)
    assert cfg["input"]["kind"] == "simulate"
    user = yaml.safe_load(text)
    assert set(user) == {"name", "output_dir", "stages", "plots", "input", "stage1", "stage2",
                         "stage3", "stage4", "mrs", "execution"}
    assert user["stage1"] == {"ramp_fit": {"method": "ols"}, "drop_groups": 1}
    assert "# ramp fitting method (one of ols, gls)" in text
    assert "range [0, 10]" in text


def test_committed_template_is_up_to_date():
    """runs/template.yaml must equal render_template() of the real stage modules (regenerate with
    `tsoreduce --write-template runs/template.yaml`)."""
    committed = (REPO / "runs" / "template.yaml").read_text()
    assert committed == C.render_template(), (
        "runs/template.yaml is stale: run `tsoreduce --write-template runs/template.yaml`")


def test_path_keys_in_stage_sections_resolve_against_yaml(fake, tmp_path, monkeypatch):
    import types
    mod = sys.modules["tsoreduce.spectroscopic"]
    monkeypatch.setattr(mod, "CONFIG_SCHEMA", {"wavelength": {
        "specwcs_path": C.Param(None, str, "specwcs file", nullable=True),
        "source": C.Param("auto", str, "source")}})
    p = _write(tmp_path, "input: {simulate: {}}\nstage2: {wavelength: {specwcs_path: refs/s.fits, "
                         "source: refs/x}}\n")
    cfg = C.load_run_config(p)
    assert cfg["stage2"]["wavelength"]["specwcs_path"] == str(tmp_path / "refs" / "s.fits")
    assert cfg["stage2"]["wavelength"]["source"] == "refs/x"  # not a path key


def test_real_template_validates_once_stage4_parameters_are_declared(tmp_path):
    """runs/template.yaml with the real stage modules: every key it lists is accepted; the one thing a
    user must add is the transit model's parameters (named in the error)."""
    text = (Path(__file__).parents[1] / "runs" / "template.yaml").read_text()
    user = yaml.safe_load(text)
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(user))
    with pytest.raises(C.ConfigError, match="stage4.parameters"):
        C.load_run_config(p)
    user["stage4"]["parameters"] = {"t0": {"value": 60000.0, "prior": "uniform", "bounds": [59999.9, 60000.1]},
                                    "per": {"value": 1.0, "prior": "fixed"},
                                    "rp_rs": {"value": 0.1, "prior": "uniform", "bounds": [0.0, 0.3]},
                                    "a_rs": {"value": 8.0, "prior": "uniform", "bounds": [2.0, 30.0]},
                                    "inc": {"value": 88.0, "prior": "uniform", "bounds": [80.0, 90.0]}}
    p.write_text(yaml.safe_dump(user))
    cfg = C.load_run_config(p)
    assert cfg["input"]["kind"] == "simulate" and cfg["stage1"]["ramp_fit"]["units"] == "DN/s"


def test_every_problem_reported_at_once_with_its_key_path(tmp_path):
    """Schema errors and cross-field rules of every section, before any work, in one ConfigError."""
    from tsoreduce.config import validate_run_config
    from tsoreduce.errors import ConfigError
    user = {"name": "x", "plotz": True,
            "input": {"simulate": {"nints": 6}},
            "stage1": {"drop_groups": "two"},
            "stage2": {"deep_frame": {"baseline_ints": [30, 5]}, "pca": {"columns": [61, 12]}},
            "stage3": {"extraction": {"width_grid": [2.0, 12.0, -1.0]},
                       "lightcurves": {"white_range": [12.0, 5.0], "edges": [5.0, 7.0, 6.0]}},
            "stage4": {"fitter": {"nsteps": 1}}}
    with pytest.raises(ConfigError) as info:
        validate_run_config(user, tmp_path)
    errs = info.value.errors
    print("\n" + str(info.value))
    paths = [e.split(":")[0] for e in errs]
    assert paths == ["plotz", "stage1.drop_groups", "stage2.pca.columns", "stage2.deep_frame.baseline_ints",
                     "stage3.extraction.width_grid", "stage3.lightcurves.edges",
                     "stage3.lightcurves.white_range", "stage4.fitter.nsteps"], errs
    assert "did you mean [5, 30]" in str(info.value) and "did you mean [12, 61]" in str(info.value)
    assert str(info.value).startswith("8 problems, nothing was run:")


def test_cross_field_rules_accept_valid_values(tmp_path):
    from tsoreduce.config import validate_run_config
    cfg = validate_run_config({"input": {"simulate": {"nints": 6}},
                               "stage2": {"deep_frame": {"baseline_ints": [0, 10, 50, -1]},
                                          "pca": {"columns": [12, 61], "n_components": 3,
                                                  "remove_components": [1, 3]}},
                               "stage3": {"lightcurves": {"edges": [5.0, 6.0, 8.0]}},
                               "stages": "1-3"}, tmp_path)
    assert cfg["stage2"]["deep_frame"]["baseline_ints"] == [0, 10, 50, -1]


@pytest.mark.parametrize("section,value,match", [
    ({"stage2": {"pca": {"n_components": 2, "remove_components": [3]}}}, None,
     r"stage2.pca.remove_components: \[3\] exceed pca.n_components = 2"),
    ({"stage2": {"bad_pixels": {"time_window": 4}}}, None, "stage2.bad_pixels.time_window: 4: must be odd"),
    ({"stage2": {"deep_frame": {"baseline_ints": [0, 10, 20]}}}, None, "even number"),
    ({"stage3": {"extraction": {"rows": [300, 100]}}}, None, r"stage3.extraction.rows: .*did you mean \[100, 300\]"),
])
def test_cross_field_rule_failures(tmp_path, section, value, match):
    from tsoreduce.config import validate_run_config
    from tsoreduce.errors import ConfigError
    with pytest.raises(ConfigError, match=match):
        validate_run_config({"input": {"simulate": {"nints": 6}}, "stages": "1-3", **section}, tmp_path)

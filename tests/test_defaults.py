"""Defaults are single-sourced: a step function's keyword default agrees with its stage's CONFIG_SCHEMA.

For every stage section of :data:`tsoreduce.config.SECTION_MODULES`, every public function of the stage
package (its ``__init__`` and, for a package, every non-private submodule -- so the check follows the
stages as they are split into one module per step) is inspected: a keyword parameter whose name is a
leaf key of that stage's schema (at any nesting level) must default to the schema's value for that key
(to one of them when the key occurs in several sub-sections).  A ``None`` default is a delegation ("the
caller or a reference file decides") and is not compared.  Tuples and lists compare by value.

Known mismatches owned by other modules are listed in KNOWN (section, function name, parameter: the
function's name, not its module, so the entries survive a module split); the list may only shrink, and
an entry that no longer mismatches fails the test so it is removed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from tsoreduce import config as C

#: (section, function, parameter) whose default still disagrees with the schema; may only shrink
KNOWN: set[tuple[str, str, str]] = {
    # low-level emcee helpers: burn-in 0 is the neutral value for a chain of any length (the schema's
    # 500 assumes the stage's 2000-step default); the stage always passes the schema's value
    ("stage4", "chain_tau", "burn_in"),
    ("stage4", "run_emcee", "burn_in"),
}

#: private functions that hold the defaults of a public ``**kwargs`` function (checked too)
BEHIND_KWARGS = {"stage4": ["tsoreduce.lightcurve.fitting._fit_lightcurve"]}


def _leaves(schema, path=()):
    for key, value in schema.items():
        if isinstance(value, C.Param):
            yield key, path + (key,), value.default
        elif isinstance(value, dict):
            yield from _leaves(value, path + (key,))


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _stage_functions(module_name):
    mod = importlib.import_module(module_name)
    mods = [mod]
    if hasattr(mod, "__path__"):
        for info in pkgutil.walk_packages(mod.__path__, module_name + "."):
            if not any(p.startswith("_") for p in info.name.split(".")):
                mods.append(importlib.import_module(info.name))
    seen = {}
    for m in mods:
        for name, obj in vars(m).items():
            if name.startswith("_") or not inspect.isfunction(obj):
                continue
            if not obj.__module__.startswith(module_name):
                continue  # imported from elsewhere (e.g. config.validate)
            seen[f"{obj.__module__}.{obj.__name__}"] = obj
    for section, quals in BEHIND_KWARGS.items():
        if C.SECTION_MODULES[section][0] == module_name:
            for qual in quals:
                mod_name, name = qual.rsplit(".", 1)
                seen[qual] = getattr(importlib.import_module(mod_name), name)
    return seen


def _mismatches(section):
    module_name = C.SECTION_MODULES[section][0]
    schema = C.stage_schema(section)
    by_key = {}
    for key, path, default in _leaves(schema):
        by_key.setdefault(key, []).append((path, default))
    out, compared = {}, 0
    for qual, fn in sorted(_stage_functions(module_name).items()):
        for p in inspect.signature(fn).parameters.values():
            if p.default is inspect.Parameter.empty or p.default is None or p.name not in by_key:
                continue
            compared += 1
            wanted = by_key[p.name]
            if any(_norm(p.default) == _norm(d) for _, d in wanted):
                continue
            out[(section, fn.__name__, p.name)] = (qual, p.default, [(".".join(path), d) for path, d in wanted])
    print(f"\n{section}: {compared} keyword defaults compared with {module_name}.CONFIG_SCHEMA")
    return out


@pytest.mark.parametrize("section", sorted(C.SECTION_MODULES))
def test_function_defaults_match_the_schema(section):
    found = _mismatches(section)
    for (_, _, name), (qual, default, wanted) in sorted(found.items()):
        print(f"{section}: {qual}({name}={default!r}) but schema {wanted}")
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, f"{section}: function defaults differ from CONFIG_SCHEMA: {new}"


def test_known_list_only_shrinks():
    found = set()
    for section in C.SECTION_MODULES:
        found |= set(_mismatches(section))
    fixed = KNOWN - found
    assert not fixed, f"these mismatches are fixed: remove them from KNOWN: {sorted(fixed)}"


def test_checker_catches_a_mismatch(monkeypatch):
    """The check can fail: a function whose default differs from the schema is reported."""
    import types
    import sys

    mod = types.ModuleType("tsoreduce_fake_stage")

    def step(data, *, threshold=5.0, window=3):
        """Fake step."""
        return data

    step.__module__ = mod.__name__
    mod.step = step
    mod.CONFIG_SCHEMA = {"jump": {"threshold": C.Param(4.0, float, "t"), "window": C.Param(3, int, "w")}}
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(C.SECTION_MODULES, "fake", (mod.__name__, "fake stage"))
    found = _mismatches("fake")
    assert set(found) == {("fake", "step", "threshold")}


def test_simulator_schemas_come_from_the_dataclass_fields():
    """``input.simulate`` (LRS) and ``input.mrs.simulate`` (MRS) hold exactly the simulator
    dataclasses' field types, defaults, descriptions and bounds (field metadata)."""
    import dataclasses

    from tsoreduce import mrs
    from tsoreduce.simulate import LRSSimConfig, MRSSimConfig

    lrs = C.simulate_schema()
    assert lrs == C.dataclass_schema(LRSSimConfig)
    undocumented = [f.name for f in dataclasses.fields(LRSSimConfig) if not f.metadata.get("doc")]
    assert not undocumented, f"LRSSimConfig fields without a description: {undocumented}"
    assert lrs["nints"].default == LRSSimConfig().nints and lrs["nints"].doc == "integrations in the exposure"
    sim = {k: v for k, v in mrs.INPUT_SCHEMA["simulate"].items() if k != "enabled"}
    assert sim == C.dataclass_schema(MRSSimConfig, names=list(sim))
    with pytest.raises(C.ConfigError, match="no field"):
        C.dataclass_schema(MRSSimConfig, names=["not_a_field"])

"""Cross-field rules of the stage configurations, checked with the schemas before any work.

The schemas (``CONFIG_SCHEMA`` of each stage module) check one key at a time: type, choices, range.
The rules here check what a single key cannot: the order of a ``[start, stop)`` pair, the length of
a ``[min, max, step]`` list, a component index beyond the number of components computed, an even
window length ...  Each rule returns its failures as ``(key path, message)`` so
:func:`tsoreduce.config.validate_run_config` reports every failure of a run file at once.

Rules are keyed by section and applied to the section completed with its defaults; a section key
missing from a stage's schema (a stage module that changed) is skipped, not an error.
"""

from __future__ import annotations

__all__ = ["RULES", "check_rules", "check_run_rules", "per_band_problems"]


def _get(section: dict, dotted: str):
    node = section
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _pairs(value) -> list[str]:
    """Failures of a flat list of [start, stop) integration pairs (None = all)."""
    if value is None:
        return []
    if len(value) == 0 or len(value) % 2:
        return [f"{value!r}: expected [start, stop) pairs (an even number of integers), e.g. [0, 30] "
                f"or [0, 30, 90, 120]"]
    out = []
    for s, e in zip(value[::2], value[1::2]):
        if s < 0:
            out.append(f"{value!r}: start {s} is negative; integrations are counted from 0")
        elif e >= 0 and e <= s:  # a negative stop counts from the end: checked against the data
            out.append(f"{value!r}: the pair [{s}, {e}] selects nothing (stop must exceed start; "
                       f"did you mean [{e}, {s}]?)")
    return out


def _range(value, n_expected: int = 2, *, strict: bool = True, what="[start, stop)") -> list[str]:
    if value is None:
        return []
    if len(value) != n_expected:
        return [f"{value!r}: expected {n_expected} values {what}"]
    a, b = value[0], value[1]
    if (b <= a) if strict else (b < a):
        return [f"{value!r}: {what} must increase (did you mean [{b}, {a}]?)"]
    return []


def _width_grid(value) -> list[str]:
    if len(value) != 3:
        return [f"{value!r}: expected [min, max, step]"]
    lo, hi, step = value
    if hi <= lo:
        return [f"{value!r}: max {hi} must exceed min {lo}"]
    if step <= 0 or step > hi - lo:
        return [f"{value!r}: step {step} must be positive and at most max - min = {hi - lo}"]
    return []


def _increasing(value) -> list[str]:
    if value is None:
        return []
    if len(value) < 2 or any(b <= a for a, b in zip(value, value[1:])):
        return [f"{value!r}: expected at least 2 strictly increasing bin edges"]
    return []


def _odd_or_zero(value) -> list[str]:
    return [] if value == 0 or value % 2 == 1 else [f"{value!r}: must be odd (a centred window) or 0"]


def _odd(value) -> list[str]:
    return [] if value % 2 == 1 else [f"{value!r}: must be odd (a centred window)"]


def _pca_components(section) -> list[tuple[str, str]]:
    pca = section["pca"]
    n = pca["n_components"]
    bad = [c for c in pca["remove_components"] if c > n]
    return [("pca.remove_components", f"{bad} exceed pca.n_components = {n}")] if bad else []


#: section -> [(key path inside the section, check(value) -> [messages])] or callables of the
#: whole section returning [(key path, message)]
RULES = {
    "stage2": [
        ("pca.columns", lambda v: _range(v, what="[start, stop) columns")),
        ("deep_frame.baseline_ints", _pairs),
        ("background.smooth_rows", _odd_or_zero),
        ("bad_pixels.time_window", _odd),
        _pca_components,
    ],
    "stage3": [
        ("trace.rows", lambda v: _range(v, strict=False, what="[first, last] rows")),
        ("extraction.rows", lambda v: _range(v, strict=False, what="[first, last] rows")),
        ("extraction.width_grid", _width_grid),
        ("lightcurves.edges", _increasing),
        ("lightcurves.white_range", lambda v: _range(v, what="[min, max] um")),
        ("lightcurves.baseline_ints", _pairs),
    ],
    "mrs": [
        # [] means all here, and nested [[start, stop], ...] pairs are accepted too
        ("lightcurves.baseline_ints",
         lambda v: [] if not v or isinstance(v[0], (list, tuple)) else _pairs(v)),
    ],
}


def check_rules(section_name: str, section: dict) -> list[tuple[str, str]]:
    """Failures of the cross-field rules of one config section.

    Parameters
    ----------
    section_name : str
        The YAML section (``"stage1"`` ... ``"stage4"``, ``"mrs"``), the key of :data:`RULES`.
    section : dict
        The section's values after schema validation.

    Returns
    -------
    list of tuple of str
        ``(full key path, message)`` per failed rule; empty when every rule holds.
    """
    out = []
    for rule in RULES.get(section_name, []):
        if callable(rule):
            try:
                out += [(f"{section_name}.{k}", m) for k, m in rule(section)]
            except (KeyError, TypeError):
                continue
            continue
        key, check = rule
        try:
            value = _get(section, key)
        except KeyError:
            continue
        try:
            msgs = check(value)
        except TypeError:  # a wrong type is the schema's message, already reported
            continue
        out += [(f"{section_name}.{key}", m) for m in msgs]
    return out


def check_run_rules(cfg: dict) -> list[tuple[str, str]]:
    """Rules across sections of a validated run configuration.

    A ``per_band`` Stage 4 parameter needs a band on every visit of ``input.lightcurves``
    (:func:`per_band_problems`).

    Parameters
    ----------
    cfg : dict
        The validated run configuration (``input``, ``stage4`` ...).

    Returns
    -------
    list of tuple of str
        ``(key path, message)`` for every broken rule; empty when none.
    """
    visits = (cfg.get("input") or {}).get("lightcurve_visits")
    if not visits:  # not a joint fit: nothing to check (and no need to import Stage 4)
        return []
    return per_band_problems((cfg.get("stage4") or {}).get("parameters"), visits)


def per_band_problems(parameters: dict, visits) -> list:
    """Parameters scoped ``per_band`` while some visit has no band: one ``(key path, message)`` each.

    Callable from the run-file validation (``input.lightcurve_visits`` and ``stage4.parameters``),
    before any file is read.

    Parameters
    ----------
    parameters : dict
        ``stage4.parameters``: name -> declaration (mapping with an optional ``scope``) or number.
    visits : list
        The visits: dicts with ``band`` and ``visit`` (``input.lightcurve_visits``) or :class:`Visit`
        objects.

    Returns
    -------
    list of tuple of str
        ``(stage4.parameters.<name>.scope, message)`` per offending parameter; empty when consistent.
    """
    def get(v, key):
        return v.get(key) if isinstance(v, dict) else getattr(v, "label" if key == "visit" else key, None)

    nob = [str(get(v, "visit") or f"v{k + 1}") for k, v in enumerate(visits or []) if get(v, "band") is None]
    out = []
    if not nob:
        return out
    for name, decl in (parameters or {}).items():
        if isinstance(decl, dict) and decl.get("scope") == "per_band":
            out.append((f"stage4.parameters.{name}.scope",
                        f"per_band, but visit(s) {nob} have no band (give band: in input.lightcurves)"))
    return out

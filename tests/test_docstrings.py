"""Every public function and class of tsoreduce has a numpydoc docstring that documents its parameters,
what it returns and what it raises.

Checked with numpydoc's own validator (``numpydoc.validate``): GL08 (no docstring), PR01 (a parameter
not documented), PR02 (a documented parameter that does not exist), RT01 (no Returns section in a
function that returns something).  Raises is checked from the source: a function whose own body raises
a named exception (``raise SomeError(...)``; bare re-raises do not count) has a Raises section.

Style checks (summary length, punctuation) are not enforced: they are taste, not content.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
import warnings

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

import tsoreduce  # noqa: E402

CODES = {"GL08", "PR01", "PR02", "RT01"}



def _public_objects():
    for info in pkgutil.walk_packages(tsoreduce.__path__, "tsoreduce."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue  # private modules are not API
        mod = importlib.import_module(info.name)
        for name, obj in sorted(vars(mod).items()):
            if name.startswith("_"):
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            yield mod.__name__, name, obj


def _raises_named(fn) -> bool:
    """Whether ``fn``'s own body (not nested functions) raises a named exception."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return False
    tree = ast.parse(src)
    top = tree.body[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(exc, (ast.Name, ast.Attribute)):
                    # ``raise err`` re-raising a caught variable is not a new failure mode
                    if not (isinstance(exc, ast.Name) and exc.id[:1].islower()):
                        return True
            if walk(child):
                return True
        return False

    return walk(top)


def _problems():
    found = {}
    for modname, name, obj in _public_objects():
        qual = f"{modname}.{name}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = numpydoc_validate.validate(qual)
        errs = [f"{c}: {m}" for c, m in res["errors"] if c in CODES]
        if inspect.isfunction(obj) and _raises_named(obj):
            doc = inspect.getdoc(obj) or ""
            if "Raises\n------" not in doc:
                errs.append("RA01: raises a named exception but has no Raises section")
        if errs:
            found[qual] = errs
    return found


def test_public_docstrings_are_complete():
    found = _problems()
    lines = [f"{q}\n    " + "\n    ".join(e) for q, e in sorted(found.items())]
    print(f"\n{len(found)} public objects with incomplete docstrings")
    assert not found, "incomplete numpydoc docstrings:\n" + "\n".join(lines)

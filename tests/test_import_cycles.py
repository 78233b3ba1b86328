"""No new import cycle between tsoreduce modules (issue 18).

Counts module-level imports only (statements executed when the module is imported, including those in
module-level ``if``/``try`` blocks and class bodies; not those inside functions, nor under
``if TYPE_CHECKING``).  An import ``from .a import b`` is an edge to ``a.b`` when that is a module, else
to ``a``; parent packages are not added as edges.  Cycles are reported as strongly connected
components of that graph.

A second check adds the imports inside functions: a cycle closed only by a function-level import is a
module-level cycle in disguise (the import was moved into a function to break it), and fails too,
except those in :data:`FUNCTION_LEVEL_ALLOWED` (none today); that set may only shrink.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tsoreduce"

# Module-level cycles allowed (none today); this set may only shrink.
KNOWN_CYCLES: set = set()

#: cycles closed by function-level imports that are being removed in parallel (issue 18): a cycle found
#: must lie within one of these sets of modules.  May only shrink; empty it when the work is merged.
FUNCTION_LEVEL_ALLOWED: set = set()


def _allowed_function_level(cycle) -> bool:
    return any(cycle <= allowed for allowed in FUNCTION_LEVEL_ALLOWED)


def _modules():
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (path, is_pkg)
    return mods


def _is_type_checking(test):
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(nodes, *, functions):
    """Import nodes in ``nodes``; descend into function bodies only when ``functions``."""
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not functions:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(node.orelse, functions=functions)
            continue
        for child in ast.iter_child_nodes(node):
            yield from _imports([child], functions=functions)


def _graph(*, functions=False):
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        deps = set()
        for node in _imports(ast.parse(path.read_text(), str(path)).body, functions=functions):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def test_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]


def test_no_new_module_level_import_cycle():
    graph = _graph()
    cycles = _cycles(graph)
    print(f"\n{len(graph)} modules, {sum(map(len, graph.values()))} module-level tsoreduce imports; "
          f"cycles: {[sorted(c) for c in cycles]}")
    new = [sorted(c) for c in cycles if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, f"new module-level import cycle(s) between tsoreduce modules: {new}"
    gone = [sorted(k) for k in KNOWN_CYCLES if not any(k <= c for c in cycles)]
    print(f"known cycles now gone (remove them from KNOWN_CYCLES): {gone}")


def test_no_cycle_closed_by_a_function_level_import():
    cycles = _cycles(_graph())
    hidden = [c for c in _cycles(_graph(functions=True)) if c not in cycles]
    print(f"\ncycles closed only by function-level imports: {[sorted(c) for c in hidden]}")
    new = [sorted(c) for c in hidden if not _allowed_function_level(c)]
    assert not new, ("import cycle(s) hidden by a function-level import (give the shared code its own "
                     f"module instead): {new}")
    gone = [sorted(a) for a in FUNCTION_LEVEL_ALLOWED if not any(a & c for c in hidden)]
    print(f"allowed function-level cycles now gone (remove them from FUNCTION_LEVEL_ALLOWED): {gone}")


def test_function_level_check_finds_a_hidden_cycle(tmp_path, monkeypatch):
    """The function-level graph sees an import inside a function (so the check above can fail)."""
    pkg = tmp_path / "tsoreduce"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    assert _cycles(_graph()) == []
    assert _cycles(_graph(functions=True)) == [frozenset({"tsoreduce.a", "tsoreduce.b"})]

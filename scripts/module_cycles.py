#!/usr/bin/env python3
"""Lists import cycles between the crate's modules (files under src/), from
their `use crate::...` / `crate::...` paths and `super::` imports. Prints
nothing and exits 0 when there is none.

    python3 scripts/module_cycles.py
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def main():
    files = {}
    for d, _, fs in os.walk(ROOT):
        for f in fs:
            if f.endswith(".rs") and not d.startswith(os.path.join(ROOT, "cli")) and f != "main.rs":
                files[module_of(os.path.join(d, f))] = open(os.path.join(d, f)).read()
    mods = set(files)
    edges = {m: set() for m in mods}
    for m, text in files.items():
        text = text.split("#[cfg(test)]")[0]
        parent = m.rsplit("::", 1)[0] if "::" in m else ""
        for path in re.findall(r"crate::([a-z_:]+)", text) + [
            (parent + "::" + p if parent else p) for p in re.findall(r"super::([a-z_:]+)", text)
        ]:
            parts = path.strip(":").split("::")
            # The longest module prefix of the path.
            for n in range(len(parts), 0, -1):
                cand = "::".join(parts[:n])
                if cand in mods and cand != m and not m.startswith(cand + "::") and not cand.startswith(m + "::"):
                    edges[m].add(cand)
                    break
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    for comp in out:
        print("cycle:", " <-> ".join(comp))
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())

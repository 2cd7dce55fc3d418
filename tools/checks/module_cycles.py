#!/usr/bin/env python3
"""Fails when sibling modules of a crate import each other in a cycle.

Usage: module_cycles.py CRATE_SRC_DIR...

It reads every `crate::…`, `super::…` and `self::…` path in the code (comments and `mod tests`
left out), resolves it to the module that defines it, and looks for strongly connected groups
of modules. A module's use of its own parent or children does not count: `mod.rs` and its files
are one unit. Exit status 1, with each cycle and its edges, when one is found.
"""
import os
import re
import sys

PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
COMMENT = re.compile(r"(^|[^:])//.*$")


def modules(root):
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found["::".join(parts)] = path
    return found


def resolve(mods, current, segments):
    if segments[0] == "crate":
        base, segments = [], segments[1:]
    elif segments[0] == "super":
        base, segments = current[:-1], segments[1:]
        while segments and segments[0] == "super":
            base, segments = base[:-1], segments[1:]
    else:
        base, segments = current, segments[1:]
    for i in range(len(segments), 0, -1):
        candidate = "::".join(base + segments[:i])
        if candidate in mods:
            return candidate
    return None


def related(a, b):
    return a == b or a.startswith(b + "::") or b.startswith(a + "::") or "" in (a, b)


def edges_of(mods):
    edges = {m: set() for m in mods}
    for module, path in mods.items():
        current = module.split("::") if module else []
        with open(path, encoding="utf-8") as f:
            source = re.split(r"#\[cfg\(test\)\]\s*mod tests", f.read())[0]
        source = "\n".join(COMMENT.sub(r"\1", line) for line in source.split("\n"))
        for match in PATH.finditer(source):
            target = resolve(mods, current, match.group(1).split("::"))
            if target is not None and not related(module, target):
                edges[module].add(target)
    return edges


def cycles(edges):
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return groups


def main():
    failed = False
    for root in sys.argv[1:]:
        edges = edges_of(modules(root))
        for group in cycles(edges):
            failed = True
            print(f"{root}: modules in an import cycle: {', '.join(group)}")
            for a in group:
                for b in sorted(edges[a] & set(group)):
                    print(f"  {a} -> {b}")
    if not failed:
        print(f"module cycles: none in {', '.join(sys.argv[1:])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

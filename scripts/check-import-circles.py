#!/usr/bin/env python3
"""Finds import circles between the source files of each crate (issue 15: every module's
imports point down or sideways, never back).

A file's edges are the modules it names through `crate::`, `super::`, `self::` or a child
module it declares (`mod x;` then `x::...`); each path resolves to the longest prefix that is a
file of the crate. Test modules (`#[cfg(test)] mod ... {`) and comments are ignored. A strongly
connected component of more than one file is a circle; the script prints each and exits 1.

Usage: check-import-circles.py SRC_DIR...   (e.g. agent/src provider/src)
"""
import os
import re
import sys
from collections import defaultdict


def module_files(root):
    out = {}
    for d, _, names in os.walk(root):
        for f in names:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            out[tuple(parts)] = path
    return out


def without_tests_and_comments(src):
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", src)
    if m:
        src = src[: m.start()]
    return re.sub(r"//.*", "", src)


def paths_named(module, src):
    parent = list(module[:-1])
    here = list(module)
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+)", src):
        base = {"crate": [], "super": parent, "self": here}[m.group(1)]
        parts = m.group(2).split("::")[1:]
        while parts and parts[0] == "super":
            base, parts = base[:-1], parts[1:]
        yield base + parts
    for m in re.finditer(r"use\s+(crate|super)::\{([^;]*)\};", src, re.S):
        base = [] if m.group(1) == "crate" else parent
        for item in re.split(r",\s*(?![^{]*\})", m.group(2)):
            item = re.sub(r"\{.*", "", item.strip(), flags=re.S)
            if item:
                yield base + [p for p in item.split("::") if p]
    for child in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", src, re.M):
        for m in re.finditer(r"(?<![\w:])" + child + r"((?:::\w+)+)", src):
            yield here + [child] + m.group(1).split("::")[1:]


def import_graph(root):
    files = module_files(root)
    graph = defaultdict(set)
    for module, path in files.items():
        with open(path, encoding="utf-8") as f:
            src = without_tests_and_comments(f.read())
        for named in paths_named(module, src):
            for k in range(len(named), -1, -1):
                target = tuple(named[:k])
                if target in files:
                    if target != module:
                        graph[module].add(target)
                    break
    return files, graph


def circles(files, graph):
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in files:
        if v not in index:
            visit(v)
    return found


def main(roots):
    bad = 0
    for root in roots:
        files, graph = import_graph(root)
        for comp in circles(files, graph):
            bad += 1
            names = [os.path.relpath(files[m]) for m in comp]
            print(f"import circle in {root}: " + " <-> ".join(names))
    print(f"{bad} import circle(s) in {len(roots)} crate(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Finds import circles among the library's modules (the files and directories under src/).

Usage: python3 scripts/import-cycles.py [-v] [SRC_DIR]   (default: src/ next to this script's directory)

Every module (a file, or a directory with its mod.rs) is a node. A reference from one module to another is any
path that names a crate item: `use` declarations (with their brace trees expanded) and `crate::`, `super::`,
`self::` or child-module paths in code. A path is resolved to the module that *defines* the item, following
`pub use` re-exports to the module that defines the item. Each reference becomes an edge between the two sibling
modules that contain its two ends (below their closest common ancestor): `model::dit` -> `kernels::fused::cpu`
is the edge `model -> kernels` among the crate's top-level modules, `data::video::clip` -> `data::vocab` the
edge `video -> vocab` among `data`'s children. A directory's own mod.rs and its children are one unit (the
parent re-exports and calls its children, which use the parent's shared types), so references between a
module and its own ancestors are not edges. Cycles are looked for among the siblings of every directory; the
script prints each with the references behind its edges and exits 1 if there is any, 0 otherwise. `-v` also
prints every edge. Comments, strings and `src/main.rs` (the binary, a separate crate) are skipped.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """Blanks comments, string and char literals (keeping newlines, so offsets still give line numbers)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif (c == "r" or c == "b") and re.match(r'(br|r)(#*)"', text[i:i + 40]) and not re.match(r"\w", text[i - 1:i] or " "):
            m = re.match(r'(br|r)(#*)"', text[i:])
            end = text.find('"' + m.group(2), i + m.end())
            j = n if end < 0 else end + 1 + len(m.group(2))
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:  # a char literal (a lifetime has no closing quote right after one char)
                out.append(" " * m.end())
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> [[a, b], [a, c, d], [a, c]]; `*` stays as a segment."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, s):
        # Split s at top-level commas.
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            if "{" in part:
                head = part[: part.index("{")]
                inner = part[part.index("{") + 1: part.rindex("}")]
                segs = [x for x in head.split("::") if x]
                walk(prefix + segs, inner)
            else:
                segs = [x for x in part.split("::") if x]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                results.append(prefix + segs)

    walk([], tree)
    return results


class Module:
    def __init__(self, path, file):
        self.path = tuple(path)  # module path from the crate root
        self.file = file
        self.children = set()
        self.code = ""
        self.reexports = {}  # name -> absolute path it re-exports
        self.globs = []  # absolute module paths re-exported with `pub use x::*`
        self.defs = set()  # item names defined in this file


def discover(src):
    mods = {}

    def add(path, file):
        m = Module(path, file)
        mods[m.path] = m
        if path:
            mods[tuple(path[:-1])].children.add(path[-1])

    add([], os.path.join(src, "lib.rs"))

    def walk(dir_, prefix):
        for name in sorted(os.listdir(dir_)):
            full = os.path.join(dir_, name)
            if os.path.isdir(full):
                mod_rs = os.path.join(full, "mod.rs")
                sibling = full + ".rs"
                file = mod_rs if os.path.exists(mod_rs) else sibling if os.path.exists(sibling) else None
                if file:
                    add(prefix + [name], file)
                    walk(full, prefix + [name])
            elif name.endswith(".rs") and name not in ("mod.rs", "lib.rs", "main.rs") or (
                name.endswith(".rs") and prefix and name == "main.rs"
            ):
                stem = name[:-3]
                if os.path.isdir(os.path.join(dir_, stem)):
                    continue  # `a.rs` beside `a/`: added with the directory
                add(prefix + [stem], full)

    walk(src, [])
    return mods


def inline_mod_ranges(code):
    """(start, end) of every inline `mod name { ... }` body."""
    ranges = []
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        ranges.append((m.end(), j))
    return ranges


def absolute(mod, segs, inline_depth, mods):
    """The absolute path of `segs` as written in `mod`, or None for an external crate / local item."""
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        return list(segs[1:])
    if head in ("super", "self"):
        base = list(mod.path)
        k = 0
        if head == "self":
            rest = segs[1:]
            ups = 0
        else:
            while k < len(segs) and segs[k] == "super":
                k += 1
            rest = segs[k:]
            ups = max(0, k - inline_depth)
        if ups > len(base):
            return None
        return base[: len(base) - ups] + list(rest)
    if head in mod.children and inline_depth == 0:
        return list(mod.path) + list(segs)
    return None


def parse(mods):
    for mod in mods.values():
        with open(mod.file, encoding="utf-8") as f:
            mod.code = strip_code(f.read())
        for m in re.finditer(r"\b(?:fn|struct|enum|type|trait|const|static|union)\s+(" + IDENT + ")", mod.code):
            mod.defs.add(m.group(1))
    for mod in mods.values():
        ranges = inline_mod_ranges(mod.code)
        depth_at = lambda pos: sum(1 for a, b in ranges if a <= pos < b)
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", mod.code):
            for segs in expand_use_tree(m.group(1)):
                target = absolute(mod, segs, depth_at(m.start()), mods)
                if target is None:
                    continue
                if segs[-1] == "*":
                    mod.globs.append(target[:-1])
                else:
                    alias = re.search(r"\bas\s+(" + IDENT + ")", m.group(1))
                    mod.reexports[target[-1]] = target
                    if alias and len(expand_use_tree(m.group(1))) == 1:
                        mod.reexports[alias.group(1)] = target


def resolve(path, mods, seen=None):
    """The module that defines the item `path` names (following re-exports), or None if it is not in the crate."""
    seen = seen or set()
    cur = ()
    for k, seg in enumerate(path):
        mod = mods.get(cur)
        if mod is None:
            return None
        if seg in mod.children:
            cur = cur + (seg,)
            continue
        if seg == "*":
            return cur
        key = (cur, seg)
        if key in seen:
            return cur
        seen.add(key)
        if seg in mod.reexports and seg not in mod.defs:
            return resolve(list(mod.reexports[seg]) + list(path[k + 1:]), mods, seen)
        if seg not in mod.defs:
            for g in mod.globs:
                owner = resolve(list(g) + [seg], mods, seen)
                if owner is not None and seg in mods[owner].defs:
                    return owner
        return cur
    return cur


def references(mod, mods):
    """(target module path, line) for every crate path `mod` uses."""
    code = mod.code
    ranges = inline_mod_ranges(code)
    depth_at = lambda pos: sum(1 for a, b in ranges if a <= pos < b)
    line_at = lambda pos: code.count("\n", 0, pos) + 1
    refs = []
    use_spans = []
    for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", code):
        use_spans.append((m.start(), m.end()))
        is_pub = m.group(1) is not None
        for segs in expand_use_tree(m.group(2)):
            target = absolute(mod, segs, depth_at(m.start()), mods)
            if target is None:
                continue
            if is_pub and depth_at(m.start()) == 0:
                # A re-export: the façade, unless this module's own code uses the name.
                name = segs[-1]
                rest = code[: m.start()] + code[m.end():]
                if name == "*" or not re.search(r"\b" + re.escape(name) + r"\b", rest):
                    continue
            refs.append((target, line_at(m.start())))
    in_use = lambda pos: any(a <= pos < b for a, b in use_spans)
    heads = ["crate", "super", "self"] + sorted(mod.children)
    pattern = r"(?<![\w:$])((?:" + "|".join(map(re.escape, heads)) + r")(?:::" + IDENT + r")+)"
    for m in re.finditer(pattern, code):
        if in_use(m.start()):
            continue
        segs = m.group(1).split("::")
        target = absolute(mod, segs, depth_at(m.start()), mods)
        if target is not None:
            refs.append((target, line_at(m.start())))
    return refs


def tarjan(nodes, edges):
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            sccs.append(scc)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [s for s in sccs if len(s) > 1]


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    verbose = "-v" in sys.argv[1:]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    src = os.path.normpath(src)
    mods = discover(src)
    parse(mods)
    # levels[parent][(from, to)] = [(file, line)]; a node is a child name or "(body)".
    levels = defaultdict(lambda: defaultdict(list))
    for mod in mods.values():
        for target, line in references(mod, mods):
            owner = resolve(target, mods)
            if owner is None:
                continue
            s, t = mod.path, owner
            k = 0
            while k < min(len(s), len(t)) and s[k] == t[k]:
                k += 1
            parent = s[:k]
            a = s[k] if len(s) > k else "(body)"
            b = t[k] if len(t) > k else "(body)"
            if a == b or "(body)" in (a, b):
                continue  # within one module, or between a module and its own parent (see the module docs)
            where = os.path.relpath(mod.file, os.path.dirname(src))
            levels[parent][(a, b)].append(f"{where}:{line}")
    cycles = 0
    for parent in sorted(levels):
        edges = defaultdict(set)
        nodes = set()
        for (a, b) in levels[parent]:
            edges[a].add(b)
            nodes |= {a, b}
        label = "crate" if not parent else "crate::" + "::".join(parent)
        if verbose:
            for (a, b), sites in sorted(levels[parent].items()):
                print(f"{label}: {a} -> {b}  ({sites[0]}{', ...' if len(sites) > 1 else ''})")
        for scc in tarjan(nodes, edges):
            cycles += 1
            members = set(scc)
            print(f"cycle in {label}: {' <-> '.join(sorted(members))}")
            for (a, b), sites in sorted(levels[parent].items()):
                if a in members and b in members:
                    shown = ", ".join(sites[:3]) + (f" (+{len(sites) - 3} more)" if len(sites) > 3 else "")
                    print(f"  {a} -> {b}: {shown}")
    n_mods = len(mods)
    if cycles:
        print(f"{cycles} import cycle(s) among {n_mods} modules")
        return 1
    print(f"no import cycles among {n_mods} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())

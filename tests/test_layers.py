"""The import rule of the layers (README "Layout"): every import of src/exolam, module level or inside a
function, points down this list or stays in its own layer; no two modules import each other, directly or
around a loop; no user command imports an experiment module. Read from the source with `ast`, nothing run."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "exolam"

# top first. objectives.py sits below models/: it is the weighted-terms machinery (and squared errors)
# that the LAMs' objectives and the policies' objectives (models/policy.py) are both written in; it
# reads only data/. The bottom layer holds the helpers every layer may use.
LAYERS = [
    ["__init__", "cli"],  # __init__: exolam.load etc.; cli: every `exolam` command
    ["workflows"],
    ["experiments"],
    ["train"],
    ["metrics"],
    ["theory"],
    ["models"],
    ["objectives"],
    ["envs"],
    ["data"],
    ["runs", "plotting", "set_by", "seeding", "errors"],
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
USER_COMMANDS = ("exolam.workflows", "exolam.cli.own", "exolam.cli.diagnose", "exolam.cli.control")


def module_name(path: Path) -> str:
    return ".".join(("exolam", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def imports() -> dict[str, set[str]]:
    """module -> the exolam modules it imports anywhere in its source (`from exolam.x import name` counts as
    exolam.x.name where that is a module)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for mod, path in modules.items():
        got = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exolam"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                got |= subs or {node.module}
            elif isinstance(node, ast.Import):
                got |= {a.name for a in node.names if a.name.startswith("exolam")}
        out[mod] = {m for m in got if m in modules and m != mod}
    return out


def layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {layer(m) for m in imports()} <= set(RANK), sorted({layer(m) for m in imports()} - set(RANK))


def test_imports_point_down():
    up = [f"{a} -> {b}" for a, bs in imports().items() for b in bs if RANK[layer(b)] < RANK[layer(a)]]
    assert not up, "imports against the layers:\n" + "\n".join(sorted(up))


def test_no_import_cycle():
    graph = imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (loop := visit(n)):
                return loop
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (loop := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(loop))


def test_user_commands_import_no_experiment():
    bad = [f"{a} -> {b}" for a, bs in imports().items() if a.startswith(USER_COMMANDS)
           for b in bs if layer(b) == "experiments"]
    assert not bad, bad

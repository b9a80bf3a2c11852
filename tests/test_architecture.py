"""The house rules, read from the source: no module reaches into another package's private parts,
and nothing under draw/ runs a model (draw draws what the compute measured)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "netviz"


def _modules() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")}


def _package_of(path: Path) -> str:
    return ".".join(("netviz", *path.relative_to(SRC).parent.parts))


def _runtime_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """``from netviz... import ...`` statements, except those under ``if TYPE_CHECKING:``."""
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            typing_only.update(id(n) for n in ast.walk(node))
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and id(n) not in typing_only
            and (n.module or "").startswith("netviz")]


def _reaches_a_model(node: ast.AST) -> bool:
    """``run.model`` (a Run's network), or a call of ``.forward``/``.backward``."""
    if isinstance(node, ast.Attribute) and node.attr == "model":
        return isinstance(node.value, ast.Name) and node.value.id in ("run", "r")
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("forward", "backward"))


def test_no_module_imports_a_private_name_of_another_package() -> None:
    found = []
    for path, tree in _modules().items():
        own = _package_of(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("netviz"):
                continue
            parts = node.module.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
            if private is not None and ".".join(parts[:private]) != own:
                found.append(f"{path.relative_to(SRC)}: from {node.module}")
            if node.module != own and not node.module.startswith(own + "._"):
                found += [f"{path.relative_to(SRC)}: {a.name} from {node.module}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_nothing_under_draw_runs_a_model() -> None:
    found = []
    for path, tree in _modules().items():
        if path.parent.name != "draw":
            continue
        for node in ast.walk(tree):
            if _reaches_a_model(node):
                found.append(f"{path.name}:{node.lineno} uses the model")
        for node in _runtime_imports(tree):
            if node.module.split(".")[1] in ("layers", "dream", "attribute", "evaluate", "neurons", "training"):
                found.append(f"{path.name}:{node.lineno} imports {node.module}")
    assert found == []


def test_the_rules_catch_what_they_forbid() -> None:
    # the checks above are not vacuous: the same walk flags a draw module that runs the model
    tree = ast.parse("from netviz.dream import measure_result\ndef f(run):\n    return run.model(1)\n")
    assert any(_reaches_a_model(n) for n in ast.walk(tree))
    assert [n.module for n in _runtime_imports(tree)] == ["netviz.dream"]
    assert not any(_reaches_a_model(n) for n in ast.walk(ast.parse("title = h.model + ' weights'")))


def _import_graph() -> dict[str, set[str]]:
    """Module -> the netviz modules it imports, at the top or inside a function (not for typing):
    ``from netviz.a import b`` names netviz.a.b when that is a module, else netviz.a."""
    modules = {".".join(("netviz", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            base = node.module
            if node.level:
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    # commands <-> report <-> training, outputs <-> runs and dream.loop <-> dream.measure were
    # circles; a function-level import hides a circle, it does not remove it
    graph = _import_graph()
    for name in list(graph):  # a package re-exporting its members is not a circle with them
        graph[name] = {e for e in graph[name] if not (name.startswith(e + ".") and e in graph)}
    assert _circles(graph) == []


def test_the_circle_check_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _names_a_kind(node: ast.AST) -> bool:
    """``x.kind`` or ``x.kind.name``."""
    if not isinstance(node, ast.Attribute):
        return False
    return node.attr == "kind" or node.attr == "name" and isinstance(node.value, ast.Attribute) \
        and node.value.attr == "kind"


def test_model_kinds_are_plug_ins() -> None:
    # a kind of model reference is one module of netviz/kinds: nothing else compares a kind's name
    found = []
    for path, tree in _modules().items():
        if path.parent.name == "kinds":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(_names_a_kind(side) for side in [node.left, *node.comparators]) \
                    and any(isinstance(c, ast.Constant) and isinstance(c.value, str) for c in node.comparators):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    # dream targets and data sets have kinds of their own, not model kinds
    assert [f for f in found if not f.startswith(("dream/", "draw/dream.py"))] == []


def test_no_default_is_written_in_the_cli() -> None:
    # a command's defaults live in its Python function (or the dataclass of a method's options);
    # the click options read them, so `--help`, the CLI and a notebook cannot drift apart
    tree = ast.parse((SRC / "cli.py").read_text(encoding="utf-8"))
    written = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "option":
            for kw in node.keywords:
                if kw.arg == "default" and isinstance(kw.value, ast.Constant) and kw.value.value not in (None, False):
                    written.append(f"cli.py:{node.lineno} default={kw.value.value!r}")
    assert written == []


def test_every_click_default_is_the_options_default() -> None:
    # each analysis declares its options once (a dataclass); its click options and its Python
    # function's keywords are both made from it
    import dataclasses
    import inspect

    import click

    from netviz import commands
    from netviz.cli import cli
    from netviz.sources import ModelOptions

    checked = 0
    model = {f.name: f for f in dataclasses.fields(ModelOptions)}
    for name, function in commands.FUNCTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(function.options_type)}
        python = inspect.signature(function).parameters
        for param in cli.get_command(None, name).params:
            if isinstance(param, click.Option) and param.name in fields:
                default = fields[param.name].default
                assert python[param.name].default == default, f"{name}({param.name}=...)"
                assert param.default == default or (param.is_flag and not default), \
                    f"{name} --{param.name}: click {param.default!r}, options {default!r}"
                checked += 1
    for name in (*commands.FUNCTIONS, "train", "layers", "report"):  # the model's own, declared once too
        for param in cli.get_command(None, name).params:
            if isinstance(param, click.Option) and param.name in model:
                assert param.default == model[param.name].default or (param.multiple and not param.default), \
                    f"{name} --{param.name}"
                checked += 1
    assert checked >= 200


NEW_COMMAND = '''
from dataclasses import dataclass

from netviz.files import Artifact, write_json
from netviz.options import CommandOptions, option


@dataclass(frozen=True)
class CountOptions(CommandOptions):
    times: int = option(2, "How many times each parameter is counted.", "count")


@dataclass
class Counted:
    parameters: int
    label: str = "all"

    def lines(self):
        return [f"{self.parameters} parameters"]

    def summary(self):
        return {"parameters": self.parameters}


def compute(run, options, quiet=False):
    return Counted(options.times * sum(p.numel() for p in run.model.parameters()))


def draw(result, folder, options):
    return [Artifact(write_json(folder / "count.json", {"parameters": result.parameters}), "the count")]
'''


def test_a_new_command_is_its_compute_its_draw_and_its_catalog_entry(tmp_path, monkeypatch) -> None:
    # DEVELOPERS.md's promise: a command that follows the standard outline needs its compute module
    # (options, result, compute), its draw module and one catalog entry; its Python function and its
    # command line are made from them
    import json

    from click.testing import CliRunner

    from netviz import commands
    from netviz.catalog import Command
    from netviz.cli import analysis_command

    (tmp_path / "count_command.py").write_text(NEW_COMMAND)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = Command("count", "Parameters", "How many parameters.", help="Count the model's parameters.",
                    options="count_command:CountOptions", compute="count_command:compute", draw="count_command:draw")
    function = commands.standard(entry)
    out = tmp_path / "out"
    result = CliRunner().invoke(analysis_command(entry, function),
                                ["--model", "mnist", "--times", "3", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from netviz.registry import build_model

    expected = 3 * sum(p.numel() for p in build_model("mnist").parameters())
    assert json.loads((out / "count.json").read_text()) == {"parameters": expected}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"] == {"times": 3} and manifest["summary"] == {"parameters": expected}
    assert "--times INTEGER" in CliRunner().invoke(analysis_command(entry, function), ["--help"]).output

"""The package's imports point one way (../shared/STYLE.md, "Layers"): a module imports only from layers
below its own, or from its own package; and no function-level import of genloom is left to dodge a cycle."""

import ast
from pathlib import Path

import genloom

PACKAGE = Path(genloom.__file__).parent

# Lowest first. Packages on one level do not import each other.
LAYERS = [
    {"errors"},
    {"config", "checkpoint", "device"},  # storage: settings, files, devices
    {"plot"},  # PNGs written atomically through checkpoint
    {"data", "nn"},
    {"models"},
    {"decoding", "training", "metrics", "safety"},
    {"recipes"},
    {"api"},
    {"apps"},
    {"serve"},  # the HTTP server; `genloom serve` starts it
    {"commands"},  # what each CLI command does
    {"cli"},
    {"__main__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
# Where a lazy import is the point and not a cycle dodge: ``import genloom`` stays torch-free, and the command
# line answers --help and usage errors before torch loads.
LAZY_ALLOWED = {"__init__", "cli"}


def top(module: str) -> str:
    """``genloom.models.gpt`` → ``models``."""
    return module.split(".")[1] if module.count(".") else "__init__"


def genloom_imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genloom"):
            if node.module == "genloom":
                found += [(node, f"genloom.{alias.name}") for alias in node.names]
            else:
                found.append((node, node.module))
        elif isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names if alias.name.startswith("genloom")]
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        name = "genloom." + ".".join(relative.parts).removesuffix(".__init__")
        yield path, name, ast.parse(path.read_text(encoding="utf-8"))


def test_every_package_has_a_layer():
    names = {top(name) for _, name, _ in modules()} - {"__init__"}
    assert names <= set(LEVEL), f"give these a layer: {sorted(names - set(LEVEL))}"


def test_imports_point_down():
    upward = []
    for path, name, tree in modules():
        mine = top(name)
        if mine == "__init__":
            continue
        for node, target in genloom_imports(tree):
            theirs = top(target)
            if theirs in ("__init__", "__version__") or theirs == mine:
                continue  # the package's version, or a module of the same package
            if LEVEL[theirs] >= LEVEL[mine]:
                upward.append(f"{name} (line {node.lineno}) imports {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_no_function_level_genloom_imports():
    nested = []
    for path, name, tree in modules():
        if top(name) in LAZY_ALLOWED:
            continue
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node, target in genloom_imports(function):
                    nested.append(f"{name}.{function.name} (line {node.lineno}) imports {target}")
    assert not nested, "function-level imports:\n" + "\n".join(nested)


def test_importing_genloom_its_config_or_its_parser_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, genloom, genloom.config, genloom.cli; genloom.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

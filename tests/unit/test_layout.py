"""The layout's rules that a reader relies on: imports point one way."""
import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
# each package of `mesh` may import only those before it
MESH_ORDER = ["core", "data", "auth", "messaging", "http", "runtime", "ops"]


def imports_of(path):
    """The dotted names `path` imports, at any depth (function-level imports too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def files_under(*parts):
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def test_mesh_packages_import_only_those_before_them():
    wrong = []
    for path in files_under("mesh"):
        package = path.relative_to(ROOT / "mesh").parts[0]
        if package not in MESH_ORDER:
            continue  # testing.py, the plugin, may use any of them
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] in ("services", "gateway", "tests", "bench"):
                wrong.append((path.name, name))
            elif parts[0] == "mesh" and len(parts) > 1 and parts[1] in MESH_ORDER:
                if MESH_ORDER.index(parts[1]) > MESH_ORDER.index(package):
                    wrong.append((f"{package}/{path.name}", name))
    assert wrong == []


def test_every_mesh_package_says_what_it_holds():
    for package in MESH_ORDER:
        init = ROOT / "mesh" / package / "__init__.py"
        tree = ast.parse(init.read_text())
        docstring = ast.get_docstring(tree)
        assert docstring and "\n" not in docstring, package
        names = {n.id for node in tree.body if isinstance(node, ast.Assign)
                 for n in node.targets if isinstance(n, ast.Name)}
        assert "__all__" in names, package


def test_contracts_import_only_marshmallow_and_nameko_errors():
    # any consumer can use them: no mesh, no service, no broker
    for path in files_under("contracts"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert (top in sys.stdlib_module_names or top in ("contracts", "marshmallow")
                    or name.startswith("nameko.exceptions")), (path.name, name)

"""runners/ chooses runners, options and endpoints; nothing below it imports it (DESIGN.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW_RUNNERS = ("models", "transforms", "pipelines", "schemas")


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """The top-level modules ``path`` imports anywhere (functions included), read with ``ast``.

    Relative imports are resolved against the file's package; ``importlib.import_module``
    and ``__import__`` of a literal name count too.
    """
    package = list(path.relative_to(root).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            full = base + (node.module.split(".") if node.module else [])
            names.update([full[0]] if full else [alias.name for alias in node.names])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def test_nothing_below_runners_imports_runners():
    files = [path for folder in BELOW_RUNNERS for path in sorted((ROOT / folder).glob("**/*.py"))]
    assert {path.parts[-2] for path in files} >= {"models", "transforms", "pipelines"}
    offenders = sorted(
        str(path.relative_to(ROOT)) for path in files if "runners" in imported_modules(path)
    )
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "from runners.replay import attach_sinks\n",
        "import runners.local.redis_server as lr\n",
        "def main():\n    from runners import replay\n",
        "from .. import runners\n",
        "from ..runners import prism\n",
        "import importlib\nimportlib.import_module('runners.replay')\n",
    ],
)
def test_the_check_sees_an_import_of_runners(tmp_path, source):
    bad = tmp_path / "pipelines" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(source)
    assert "runners" in imported_modules(bad, tmp_path)


def test_the_check_leaves_other_imports_alone(tmp_path):
    fine = tmp_path / "pipelines" / "fine.py"
    fine.parent.mkdir()
    fine.write_text("from . import sinks\nfrom .summary import verdict\nimport apache_beam\n")
    assert imported_modules(fine, tmp_path) == {"pipelines", "apache_beam"}

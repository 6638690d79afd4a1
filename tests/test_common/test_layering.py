"""The layers of DESIGN.md hold: no package imports one above it.

Bottom up: ``common`` ← ``attacks`` and ``model_zoo`` ← ``benchmark`` ← ``tools``; the report
generator (``leaderboard``) reads the store's data format and uses ``common``, never torch, attacks or
model code. Checked twice: each package is imported in a fresh interpreter and ``sys.modules`` is
searched for the forbidden layers, and every import statement of its files (also those inside
functions, which a fresh import does not run) is read from the source.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = ('common', 'attacks', 'model_zoo', 'benchmark', 'leaderboard')

#: package (or module) → top-level packages it must not pull in
FORBIDDEN = {
    'common': PROJECT[1:],
    'model_zoo': ('benchmark', 'leaderboard'),
    'attacks': ('benchmark', 'leaderboard'),
    'leaderboard.report': ('torch', 'attacks', 'model_zoo'),
}


def _loaded_after_import(module: str, submodules: bool) -> set:
    code = f'''
import importlib, json, pkgutil, sys
m = importlib.import_module({module!r})
if {submodules!r} and hasattr(m, '__path__'):
    for info in pkgutil.walk_packages(m.__path__, m.__name__ + '.'):
        importlib.import_module(info.name)
print(json.dumps(sorted({{k.split('.')[0] for k in sys.modules}})))
'''
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize('module', sorted(FORBIDDEN))
def test_fresh_import_pulls_in_no_layer_above(module):
    """Importing the package and all its submodules loads none of the forbidden packages."""
    loaded = _loaded_after_import(module, submodules=True)
    assert not loaded & set(FORBIDDEN[module]), f'{module} pulls in {sorted(loaded & set(FORBIDDEN[module]))}'


def _imported_names(path: Path):
    """(line, top-level package) of every absolute import in a file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split('.')[0]


@pytest.mark.parametrize('module', sorted(FORBIDDEN))
def test_no_import_statement_reaches_a_layer_above(module):
    """Also function-level imports: a cycle hidden in a function is still a cycle."""
    base = REPO.joinpath(*module.split('.'))
    files = sorted(base.rglob('*.py')) if base.is_dir() else [base.with_suffix('.py')]
    assert files
    bad = [f'{f.relative_to(REPO)}:{line} imports {name}' for f in files
           for line, name in _imported_names(f) if name in FORBIDDEN[module]]
    assert not bad, bad


def test_common_imports_only_the_standard_library():
    loaded = _loaded_after_import('common', submodules=True)
    assert not loaded & {'numpy', 'torch', 'jsonschema', 'yaml', 'mmengine', *PROJECT[1:]}

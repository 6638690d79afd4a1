"""tools/validate_results.py: problems as `file: field: reason`, a summary, exit 0 / 1 / 2."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def validate(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'validate_results.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_committed_results_are_clean_and_fast():
    start = time.perf_counter()
    proc = validate()                                               # default: the repository's results/
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = sum(1 for p in (REPO / 'results').rglob('*.json') if 'artifacts' not in p.parts)
    assert proc.stdout.splitlines()[-1].startswith(f'{n} record(s) checked, 0 problem(s)')
    assert elapsed < 30


def test_problems_are_listed_and_exit_1(tmp_path):
    model = next(p for p in sorted((REPO / 'results' / 'demo').iterdir()) if p.is_dir())
    cells = len(list(model.glob('*.json')))
    root = tmp_path / 'results'
    shutil.copytree(model, root / 'demo' / model.name)
    shutil.copytree(model, root / 'demo_copy' / model.name)        # cp -r of a results folder
    edited = next((root / 'demo' / model.name).glob('fgsm_eps8_*.json'))
    rec = json.loads(edited.read_text())
    rec['metrics']['miou'] = 0.99
    edited.write_text(json.dumps(rec))
    (root / 'demo' / model.name / 'notes.json').write_text('[1, 2]')
    proc = validate(root)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    lines = proc.stdout.splitlines()
    assert f'{edited}: metrics.miou: stated 0.99 differs from the value its confusion matrices give' in proc.stdout
    assert f'{root / "demo" / model.name / "notes.json"}: (top level): is a JSON list' in proc.stdout
    copies = [line for line in lines if '/demo_copy/' in line]
    assert len(copies) == cells and all(': key.suite: ' in line for line in copies)
    assert lines[-1].startswith(f'{2 * cells + 1} record(s) checked, {cells + 2} problem(s)')


def test_missing_path_is_bad_usage(tmp_path):
    proc = validate(tmp_path / 'nope')
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('error: ') and 'does not exist' in proc.stderr

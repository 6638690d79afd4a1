"""Result records: typed JSON validated by a versioned schema, written atomically, verified on read.

Layout under a results root::

    <root>/<suite>/<model>/<attack>_eps<ε>_<cell_id>.json   # the record (schema record-v1)
    <root>/<suite>/<model>/<attack>_eps<ε>_<cell_id>.npz    # per-image confusion matrices

The record holds the dataset-level confusion matrices (exact integer sums of the per-image ones)
and the metrics derived from them; the ``.npz`` holds the per-image matrices, the unit of truth
from which any per-image statistic (worst case over attacks, shards, ranks) can be recomputed.

Promises of the store, and where they are enforced:

* **Atomic, durable, readable by others.** Both files are written to a temporary name
  (``.<name>.XXXXXXXX.tmp``) in the target directory, fsynced, given the mode a plain ``open()``
  would give (``0o666 & ~umask``, not ``mkstemp``'s owner-only ``0600``), renamed into place, and
  the directory is fsynced. Both temporary files are complete before either is renamed, so a full
  disk or a read-only directory changes nothing that is stored (a :class:`ResultsError` says which
  path and what to do). Temporary files of a killed run are removed by
  :meth:`ResultStore.sweep_temporary` (the runner calls it while it holds the model's lock) and
  reported by :func:`find_temporary`. The writing itself is :mod:`common.atomic` (shared by every
  package that keeps a file); its names are re-exported here for existing callers.
* **Verified on read.** :meth:`ResultStore.read` (``verify=True``) refuses a record whose JSON holds
  NaN/Infinity, that does not match the schema, whose names are not valid, whose file path does not
  match its key, whose stated metrics differ from the ones its matrices give, or whose per-image
  file is missing, edited, unreadable, of the wrong row count or does not sum to the record's
  matrices. Each refusal names the file, the field and the reason (:class:`Problem`).

Only numpy, jsonschema, :mod:`common` and the standard library are imported (the leaderboard uses
this module).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from common.atomic import (atomic_write_bytes, check_writable_dir, commit,  # noqa: F401 (re-exported)
                           current_umask, find_temporary, is_temporary_name, remove_quietly,
                           write_temporary)
from common.errors import ResultsError
from common.hashing import sha256_bytes, sha256_file  # noqa: F401 (re-exported)
from common.names import check_name

from . import metrics
from .cells import CellKey

SCHEMA_VERSION = 1
_SCHEMA_PATH = Path(__file__).parent / 'schema' / f'record-v{SCHEMA_VERSION}.json'
#: Absolute tolerance when a stated metric is compared with the one recomputed from the matrices
#: (both come from the same float64 formulas; the slack only absorbs numpy-version round-off).
METRIC_TOLERANCE = 1e-9
#: Folders under a model directory that hold other data than records (fitted attack state).
NON_RECORD_DIRS = ('artifacts', 'panels')   # fitted attacks; qualitative panels' images
MATRICES = ('vs_ground_truth', 'vs_clean', 'vs_target')


# -- problems ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a stored file: which file, which field of it, and why.

    ``field`` is a dotted path into the record (``metrics.miou``, ``key.model``), or a
    parenthesised word for the file as a whole (``(json)``, ``(path)``, ``(file)``).
    """

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f'{self.file}: {self.field}: {self.reason}'


class RecordError(ResultsError):
    """A stored record failed verification; ``problems`` lists every :class:`Problem` found."""

    def __init__(self, problems: List[Problem]):
        self.problems = list(problems)
        msg = str(self.problems[0])
        if len(self.problems) > 1:
            msg += f' (and {len(self.problems) - 1} more: ' + '; '.join(
                f'{p.field}: {p.reason}' for p in self.problems[1:4]) + \
                ('; ...' if len(self.problems) > 4 else '') + ')'
        super().__init__(msg)


# -- schema --------------------------------------------------------------------------------------

def load_schema() -> dict:
    with open(_SCHEMA_PATH) as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def _validator():
    """One compiled schema validator (building one per record costs more than validating)."""
    import jsonschema
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _is_matrix(m: Any) -> bool:
    return isinstance(m, list) and all(
        isinstance(row, list) and all(type(x) is int and x >= 0 for x in row) for row in m)


def _schema_problem(record: Any) -> Optional[Tuple[List[str], str]]:
    """``(path parts, message)`` of the most relevant schema violation, or None.

    jsonschema spends most of its time descending into the confusion matrices element by element;
    matrices of non-negative Python ints (what ``json`` gives for the schema's integers) are checked
    here directly and stand in as ``[[0]]``; anything else goes through the schema as it is.
    """
    import jsonschema
    conf = record.get('confusion') if isinstance(record, dict) else None
    if isinstance(conf, dict) and all(v is None or _is_matrix(v) for v in conf.values()):
        record = dict(record, confusion={k: None if v is None else [[0]] for k, v in conf.items()})
    error = jsonschema.exceptions.best_match(_validator().iter_errors(record))
    if error is None:
        return None
    path = [str(p) for p in error.absolute_path]
    missing = re.match(r"^'(.+)' is a required property$", error.message)
    if error.validator == 'required' and missing:
        path.append(missing.group(1))   # name the missing field itself
    return path, error.message


def validate_record(record: dict, where: str = 'record') -> None:
    """Raise :class:`ResultsError` when ``record`` does not satisfy the schema or is inconsistent."""
    found = _schema_problem(record)
    if found is not None:
        path = '/'.join(found[0]) or '(top level)'
        raise ResultsError(f'{where} does not match result schema v{SCHEMA_VERSION} at {path}: '
                           f'{found[1]}')
    c = record['num_classes']
    for name, m in record['confusion'].items():
        if m is not None and (len(m) != c or any(len(row) != c for row in m)):
            raise ResultsError(f'{where}: confusion matrix {name} is not {c}x{c}')
    key = CellKey.from_dict(record['key'])
    if key.cell_id != record['cell_id']:
        raise ResultsError(f'{where}: cell_id {record["cell_id"]} does not match its key '
                           f'(expected {key.cell_id}); the record was edited or is corrupt')


# -- hashing and atomic IO: defined in the common layer, re-exported for existing callers ---------

# -- reading and verifying -----------------------------------------------------------------------

def _refuse_constant(token: str):
    raise ValueError(f'{token} is not a valid JSON number (a result must be finite)')


def parse_record_json(text: str) -> Any:
    """``json.loads`` that refuses the non-standard tokens NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_refuse_constant)


def _non_finite(obj: Any, where: str = '') -> Optional[str]:
    """Dotted path of the first non-finite float in ``obj`` (``1e999`` parses as inf), or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or '(top level)')
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f'{where}.{k}' if where else str(k))
        if found:
            return found
    return None


def hidden_class_of(params: Dict[str, Any]) -> Optional[int]:
    """The hidden class of a cell's attack params (None unless its target hides a class).

    Kept here, not in :mod:`benchmark.target_specs` (which re-exports it), so that reading and
    verifying records never imports torch (``target_specs`` builds target maps with it).
    """
    target = params.get('target') if isinstance(params, dict) else None
    if isinstance(target, dict) and target.get('kind') == 'hide_class':
        return int(target['hidden_class'])
    return None


def _same_metric(stated, recomputed) -> bool:
    if stated is None or recomputed is None:
        return stated is None and recomputed is None
    if isinstance(stated, bool) or not isinstance(stated, (int, float)):
        return False
    return abs(float(stated) - float(recomputed)) <= METRIC_TOLERANCE


def _abspath(path: Union[str, Path]) -> Path:
    return Path(os.path.abspath(path))


class _Checker:
    """Collects the problems of one record file (see :func:`inspect_record`)."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: List[Problem] = []

    def add(self, field: str, reason: str) -> None:
        self.problems.append(Problem(str(self.path), field, reason))


def inspect_record(path: Union[str, Path], *, root: Optional[Union[str, Path]] = None,
                   expect_key: Optional[CellKey] = None, per_image: bool = True
                   ) -> Tuple[Optional[dict], Optional[Dict[str, np.ndarray]], List[Problem]]:
    """Read and verify one record file; never raises for bad content.

    Args:
        path: The record's ``.json`` file.
        root: The results root it lives under, if known: the path must then be exactly
            ``<root>/<suite>/<model>/<file stem>.json`` (otherwise its last three components are
            compared with the key).
        expect_key: The key the caller asked for (the record must hold that key).
        per_image: Also verify the per-image ``.npz`` (sha256, arrays, row count, sums).

    Returns:
        ``(record, per_image_arrays, problems)``: ``record`` is None when the file cannot be read
        as a schema-valid record; ``per_image_arrays`` is None unless they were loaded and valid.
    """
    path = Path(path)
    chk = _Checker(path)
    try:
        text = path.read_bytes().decode('utf-8')
    except OSError as e:
        chk.add('(file)', f'cannot read result record: {e.strerror or e}')
        return None, None, chk.problems
    except UnicodeDecodeError as e:
        chk.add('(json)', f'cannot read result record: it is not UTF-8 text ({e.reason} at byte '
                f'{e.start}); expected a JSON record')
        return None, None, chk.problems
    if not text.strip():
        chk.add('(json)', 'cannot read result record: the file is empty; expected a JSON result record')
        return None, None, chk.problems
    try:
        record = parse_record_json(text)
    except ValueError as e:   # JSONDecodeError and the NaN/Infinity refusal
        chk.add('(json)', f'cannot read result record: it is not valid JSON ({e})')
        return None, None, chk.problems
    if not isinstance(record, dict):
        chk.add('(top level)', f'is a JSON {type(record).__name__}, expected an object (a result record)')
        return None, None, chk.problems
    if 'schema_version' not in record and 'key' not in record:
        chk.add('(top level)', 'is not a result record (no schema_version and no key); move other '
                'JSON files out of the results folder')
        return None, None, chk.problems
    bad = _non_finite(record)
    if bad:
        chk.add(bad, 'is not a finite number (NaN or infinite); a result must be finite')
        return None, None, chk.problems
    found = _schema_problem(record)
    if found is not None:
        chk.add('.'.join(found[0]) or '(top level)',
                f'does not match result schema v{SCHEMA_VERSION}: {found[1]}')
        return None, None, chk.problems
    c = record['num_classes']
    for name, m in record['confusion'].items():
        if m is not None and (len(m) != c or any(len(row) != c for row in m)):
            chk.add(f'confusion.{name}', f'is not {c}x{c} (num_classes is {c})')
        elif m is not None:
            try:
                np.asarray(m, dtype=np.int64)
            except (OverflowError, ValueError, TypeError):
                chk.add(f'confusion.{name}', 'holds counts too large for 64-bit integers; the '
                        'record is corrupt')
    if len(record['class_names']) != c:
        chk.add('class_names', f'has {len(record["class_names"])} names, num_classes is {c}')
    try:
        key = CellKey.from_dict(record['key'])
    except TypeError as e:
        chk.add('key', f'is not a cell key: {e}')
        return None, None, chk.problems
    if key.cell_id != record['cell_id']:
        chk.add('cell_id', f'{record["cell_id"]} does not match its key (expected {key.cell_id}); '
                'the record was edited or is corrupt')
    for field, what in (('suite', 'suite'), ('model', 'model'), ('attack', 'attack')):
        try:
            check_name(getattr(key, field), what)
        except ValueError as e:
            chk.add(f'key.{field}', str(e))
    if key.source_model is not None:
        try:
            check_name(key.source_model, 'source model')
        except ValueError as e:
            chk.add('key.source_model', str(e))
    if expect_key is not None and expect_key.cell_id != key.cell_id:
        chk.add('key', f'is the key of cell {key.cell_id} ({key.describe()}), but this file is where '
                f'cell {expect_key.cell_id} ({expect_key.describe()}) is stored')
    _check_location(chk, key, root)
    if chk.problems:
        return None, None, chk.problems
    _check_metrics(chk, key, record)
    arrays = _check_per_image(chk, record) if per_image else None
    if chk.problems:
        return None, None, chk.problems
    return record, arrays, chk.problems


def _check_location(chk: _Checker, key: CellKey, root) -> None:
    """The record lies at ``<root>/<suite>/<model>/<file stem>.json`` of its own key."""
    path = chk.path
    expected = f'<results>/{key.suite}/{key.model}/{key.file_stem()}.json'
    if path.stem != key.file_stem() or path.suffix != '.json':
        chk.add('(path)', f'the file name {path.name!r} does not match the record\'s key: expected '
                f'{key.file_stem()}.json (a renamed or copied record?)')
    if path.parent.name != key.model:
        chk.add('key.model', f'the record is in folder {path.parent.name!r} but its key names model '
                f'{key.model!r}; records live in {expected} (a copied or moved folder?)')
    if path.parent.parent.name != key.suite:
        chk.add('key.suite', f'the record is in folder {path.parent.parent.name!r} but its key names '
                f'suite {key.suite!r}; records live in {expected} (a copied or moved folder?)')
    if root is not None and not chk.problems:
        try:
            rel = _abspath(path).relative_to(_abspath(root))
        except ValueError:
            return
        if len(rel.parts) != 3:
            chk.add('(path)', f'the record is at {rel.as_posix()} under the results root {root}; '
                    f'expected {key.suite}/{key.model}/{path.name} (a nested copy of a results folder?)')


def _check_metrics(chk: _Checker, key: CellKey, record: dict) -> None:
    """Every metric :func:`make_record` writes equals the one recomputed from the matrices."""
    conf = {k: (None if v is None else np.asarray(v, dtype=np.int64))
            for k, v in record['confusion'].items()}
    try:
        expected = _metrics(key, conf['vs_ground_truth'], conf['vs_clean'], conf['vs_target'])
    except (ValueError, TypeError, KeyError) as e:   # e.g. a hidden class outside the classes
        chk.add('key.params', f'its metrics cannot be recomputed: {e}')
        return
    stated = record['metrics']
    for name, value in expected.items():
        if name not in stated:
            chk.add(f'metrics.{name}', 'is missing; it follows from the confusion matrices and every '
                    'record states it')
        elif name == 'per_class_iou':
            got = stated[name]
            if len(got) != len(value):
                chk.add('metrics.per_class_iou', f'has {len(got)} values, expected {len(value)}')
                continue
            for i, (s, r) in enumerate(zip(got, value)):
                if not _same_metric(s, r):
                    chk.add(f'metrics.per_class_iou.{i}', f'stated {s} differs from the value its '
                            f'confusion matrix gives ({r}); the record was edited or is corrupt')
                    break
        elif not _same_metric(stated[name], value):
            chk.add(f'metrics.{name}', f'stated {stated[name]} differs from the value its confusion '
                    f'matrices give ({value}); the record was edited or is corrupt')


def _load_npz(data: bytes) -> Dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _check_per_image(chk: _Checker, record: dict) -> Optional[Dict[str, np.ndarray]]:
    """The per-image file: present, unedited, loadable, ``num_images`` rows, summing to the record."""
    info = record.get('per_image')
    if not info:
        return None
    name = info['file']
    if name != chk.path.with_suffix('.npz').name:
        chk.add('per_image.file', f'names {name!r}; the per-image file of this record is '
                f'{chk.path.with_suffix(".npz").name!r} beside it')
        return None
    npz_path = chk.path.with_suffix('.npz')
    try:
        data = npz_path.read_bytes()
    except OSError as e:
        chk.add('per_image.file', f'{npz_path} cannot be read ({e.strerror or e}); the per-image '
                'confusion matrices are missing')
        return None
    if sha256_bytes(data) != info['sha256']:
        chk.add('per_image.sha256', f'{npz_path.name} does not match the sha256 the record names '
                '(truncated, edited or replaced)')
        return None
    try:
        arrays = _load_npz(data)
    except Exception as e:  # noqa: BLE001 - zip, zlib and numpy format errors alike: a bad file
        chk.add('per_image.file', f'{npz_path.name} cannot be loaded as numpy arrays '
                f'({type(e).__name__}: {e})')
        return None
    n, c = record['num_images'], record['num_classes']
    rows = {k: (a.shape[0] if a.ndim else 0) for k, a in arrays.items()}
    wrong = {k: r for k, r in rows.items() if r != n}
    if wrong:
        chk.add('num_images', f'is {n} but {npz_path.name} has '
                + ', '.join(f'{r} rows in {k!r}' for k, r in sorted(wrong.items()))
                + ' (one row per image)')
    for k in MATRICES:
        total = record['confusion'][k]
        a = arrays.get(k)
        if total is None:
            if a is not None:
                chk.add(f'confusion.{k}', f'is null but {npz_path.name} holds per-image matrices {k!r}')
            continue
        if a is None:
            chk.add(f'confusion.{k}', f'{npz_path.name} has no per-image matrices {k!r}')
            continue
        if a.ndim != 3 or a.shape[1:] != (c, c) or not np.issubdtype(a.dtype, np.integer):
            chk.add(f'confusion.{k}', f'{npz_path.name} array {k!r} is {a.dtype} {a.shape}; expected '
                    f'integer ({n}, {c}, {c})')
            continue
        if (a < 0).any():
            chk.add(f'confusion.{k}', f'{npz_path.name} array {k!r} has negative counts')
        elif not np.array_equal(a.sum(axis=0, dtype=np.int64), np.asarray(total, dtype=np.int64)):
            chk.add(f'confusion.{k}', f'is not the sum of the per-image matrices in {npz_path.name}; '
                    'one of the two files was edited or belongs to another cell')
    return arrays


# -- the store -----------------------------------------------------------------------------------

class ResultStore:
    """Reads and writes cell records under ``root``."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)

    def record_path(self, key: CellKey) -> Path:
        check_name(key.suite, 'suite')
        check_name(key.model, 'model')
        return self.root / key.suite / key.model / f'{key.file_stem()}.json'

    def panel_path(self, key: CellKey) -> Path:
        """Where the runner keeps a cell's qualitative-panel images (a few fixed images)."""
        return self.record_path(key).parent / 'panels' / f'{key.file_stem()}.npz'

    def exists(self, key: CellKey) -> bool:
        return self.record_path(key).is_file()

    def write(self, record: dict, per_image: Optional[Dict[str, np.ndarray]] = None) -> Path:
        """Validate and store a record (and its per-image matrices); returns the record path.

        Both files are complete on disk before either is renamed into place, so a failure (full
        disk, read-only directory: a :class:`ResultsError` naming the path) leaves any earlier
        version of the cell untouched. Replacing a stored cell (``--force``) removes its old record
        just before the renames: a crash in between leaves the cell missing (recomputed by the next
        run), never an old record beside a new per-image file.
        """
        key = CellKey.from_dict(record['key'])
        path = self.record_path(key)
        record = dict(record)
        if self.root.exists() and not self.root.is_dir():
            raise ResultsError(f'cannot write {path}: the results path {self.root} is a file; '
                               'expected a directory (it is created if missing). Move the file '
                               'away or choose another --results-dir.')
        npz_data = None
        if per_image is not None:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{k: np.asarray(v) for k, v in per_image.items() if v is not None})
            npz_data = buf.getvalue()
            record['per_image'] = {'file': path.with_suffix('.npz').name,
                                   'sha256': sha256_bytes(npz_data)}
        else:
            record.setdefault('per_image', None)
        validate_record(record, str(path))
        json_data = (json.dumps(record, indent=1, allow_nan=False) + '\n').encode()
        pending: List[Tuple[Path, Path]] = []
        try:
            if npz_data is not None:
                pending.append((write_temporary(path.with_suffix('.npz'), npz_data),
                                path.with_suffix('.npz')))
            pending.append((write_temporary(path, json_data), path))
        except BaseException:
            for tmp, _ in pending:
                remove_quietly(tmp)
            raise
        # the .npz first (a record never names a per-image file not yet there); a record being
        # replaced is removed before its .npz is, so no crash leaves an old record beside a new .npz
        commit(pending, retire=path if npz_data is not None and path.exists() else None)
        return path

    def read(self, key_or_path: Union[CellKey, Path, str], verify: bool = True) -> dict:
        """Read one record.

        Args:
            key_or_path: The cell's key, or the path of a record file.
            verify: Check everything :func:`inspect_record` checks (metrics against the matrices,
                the per-image file, names, location); ``False`` reads with the schema check only.

        Raises:
            RecordError: (a :class:`ResultsError`) naming the file, field and reason.
        """
        key = key_or_path if isinstance(key_or_path, CellKey) else None
        path = self.record_path(key) if key is not None else Path(key_or_path)
        if verify:
            record, _, problems = inspect_record(path, root=self.root, expect_key=key)
            if problems:
                raise RecordError(problems)
            return record
        try:
            record = parse_record_json(path.read_text())
        except (OSError, ValueError) as e:
            raise ResultsError(f'cannot read result record {path}: {e}') from None
        validate_record(record, str(path))
        return record

    def read_per_image(self, record_path: Union[Path, str], record: dict) -> Dict[str, np.ndarray]:
        """Load the per-image matrices of a record, checking the sha256 it names."""
        info = record.get('per_image')
        if not info:
            raise ResultsError(f'{record_path} has no per-image confusion matrices')
        npz_path = Path(record_path).parent / Path(info['file']).name
        try:
            data = npz_path.read_bytes()
        except OSError as e:
            raise ResultsError(f'{npz_path}: per_image.file: cannot be read ({e.strerror or e}); the '
                               f'per-image matrices of {record_path} are missing') from None
        if sha256_bytes(data) != info['sha256']:
            raise ResultsError(f'{npz_path} does not match the sha256 in {record_path}')
        try:
            return _load_npz(data)
        except Exception as e:  # noqa: BLE001
            raise ResultsError(f'{npz_path} cannot be loaded as numpy arrays ({type(e).__name__}: {e})'
                               ) from None

    def record_files(self, suite: Optional[str] = None) -> List[Path]:
        """Every record file under the root (or one suite), sorted; fitted-attack artifacts and
        hidden files are not records."""
        return record_files(self.root / suite if suite else self.root)

    def iter_records(self, suite: Optional[str] = None, verify: bool = True) -> Iterator[tuple]:
        """Yield ``(path, record)`` for every stored record (optionally of one suite), sorted.

        Raises :class:`ResultsError` at the first record that fails :meth:`read`.
        """
        for path in self.record_files(suite):
            yield path, self.read(path, verify=verify)

    def sweep_temporary(self, directory: Union[str, Path]) -> List[Path]:
        """Remove the temporary files an interrupted write left in one model directory.

        Call it only while holding that directory's lock (:class:`benchmark.locks.DirectoryLock`):
        a live writer's temporary file would be removed too. Returns the removed paths.
        """
        removed = []
        for tmp in find_temporary(directory):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
        return removed


def record_files(base: Union[str, Path]) -> List[Path]:
    """The record files under ``base`` (a folder) or ``base`` itself (a file), sorted.

    Hidden files (temporary files among them) and the ``artifacts`` folders of fitted attacks are
    skipped.
    """
    base = Path(base)
    if base.is_file():
        return [base]
    out = []
    for path in base.rglob('*.json'):
        rel = path.relative_to(base).parts
        if any(part.startswith('.') for part in rel) or any(d in rel[:-1] for d in NON_RECORD_DIRS):
            continue
        if path.is_file():
            out.append(path)
    return sorted(out)


def make_record(key: CellKey, *, dataset: dict, class_names: List[str], conf_gt: np.ndarray,
                conf_clean: Optional[np.ndarray], conf_target: Optional[np.ndarray],
                num_images: int, attack_stats: dict, provenance: dict) -> dict:
    """Assemble a record (metrics derived from the matrices)."""
    as_list = lambda m: None if m is None else np.asarray(m, dtype=np.int64).tolist()  # noqa: E731
    return {
        'schema_version': SCHEMA_VERSION,
        'cell_id': key.cell_id,
        'key': key.to_dict(),
        'dataset': dataset,
        'num_classes': len(class_names),
        'class_names': list(class_names),
        'num_images': int(num_images),
        'confusion': {'vs_ground_truth': as_list(conf_gt), 'vs_clean': as_list(conf_clean),
                      'vs_target': as_list(conf_target)},
        'metrics': _metrics(key, conf_gt, conf_clean, conf_target),
        'attack_stats': attack_stats,
        'provenance': provenance,
    }


def _metrics(key: CellKey, conf_gt, conf_clean, conf_target) -> dict:
    """mIoU & co. vs ground truth, plus the targeted-attack metrics the matrices allow."""
    from .targeted_metrics import summarize_targeted
    out = metrics.summarize(conf_gt, conf_clean, conf_target)
    if not key.is_clean:
        out.update(summarize_targeted(conf_clean, conf_target, hidden_class_of(key.params)))
    return out

"""Result records: typed JSON validated by a versioned schema, written atomically.

Layout under a results root::

    <root>/<suite>/<model>/<attack>_eps<ε>_<cell_id>.json   # the record (schema record-v1)
    <root>/<suite>/<model>/<attack>_eps<ε>_<cell_id>.npz    # per-image confusion matrices

The record holds the dataset-level confusion matrices (exact integer sums of the per-image ones)
and the metrics derived from them; the ``.npz`` holds the per-image matrices, the unit of truth
from which any per-image statistic (worst case over attacks, shards, ranks) can be recomputed.
Both files are written to a temporary name and renamed, so a crash never leaves a half record;
the ``.npz`` is written first and the record names its sha256.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

import numpy as np

from . import metrics
from .cells import CellKey, check_name
from .errors import ResultsError

SCHEMA_VERSION = 1
_SCHEMA_PATH = Path(__file__).parent / 'schema' / f'record-v{SCHEMA_VERSION}.json'


def load_schema() -> dict:
    with open(_SCHEMA_PATH) as f:
        return json.load(f)


def validate_record(record: dict, where: str = 'record') -> None:
    """Raise :class:`ResultsError` when ``record`` does not satisfy the schema or is inconsistent."""
    import jsonschema
    try:
        jsonschema.validate(record, load_schema())
    except jsonschema.ValidationError as e:
        path = '/'.join(str(p) for p in e.absolute_path) or '(top level)'
        raise ResultsError(f'{where} does not match result schema v{SCHEMA_VERSION} at {path}: '
                           f'{e.message}') from None
    c = record['num_classes']
    for name, m in record['confusion'].items():
        if m is not None and (len(m) != c or any(len(row) != c for row in m)):
            raise ResultsError(f'{where}: confusion matrix {name} is not {c}x{c}')
    key = CellKey.from_dict(record['key'])
    if key.cell_id != record['cell_id']:
        raise ResultsError(f'{where}: cell_id {record["cell_id"]} does not match its key '
                           f'(expected {key.cell_id}); the record was edited or is corrupt')


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ResultStore:
    """Reads and writes cell records under ``root``."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)

    def record_path(self, key: CellKey) -> Path:
        check_name(key.suite, 'suite')
        check_name(key.model, 'model')
        return self.root / key.suite / key.model / f'{key.file_stem()}.json'

    def exists(self, key: CellKey) -> bool:
        return self.record_path(key).is_file()

    def write(self, record: dict, per_image: Optional[Dict[str, np.ndarray]] = None) -> Path:
        """Validate and store a record (and its per-image matrices); returns the record path."""
        key = CellKey.from_dict(record['key'])
        path = self.record_path(key)
        record = dict(record)
        if per_image is not None:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{k: np.asarray(v) for k, v in per_image.items() if v is not None})
            data = buf.getvalue()
            npz_path = path.with_suffix('.npz')
            atomic_write_bytes(npz_path, data)
            record['per_image'] = {'file': npz_path.name, 'sha256': sha256_bytes(data)}
        else:
            record.setdefault('per_image', None)
        validate_record(record, str(path))
        atomic_write_bytes(path, (json.dumps(record, indent=1, allow_nan=False) + '\n').encode())
        return path

    def read(self, key_or_path: Union[CellKey, Path, str]) -> dict:
        path = self.record_path(key_or_path) if isinstance(key_or_path, CellKey) else Path(key_or_path)
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ResultsError(f'cannot read result record {path}: {e}') from None
        validate_record(record, str(path))
        return record

    def read_per_image(self, record_path: Union[Path, str], record: dict) -> Dict[str, np.ndarray]:
        """Load the per-image matrices of a record, checking the sha256 it names."""
        info = record.get('per_image')
        if not info:
            raise ResultsError(f'{record_path} has no per-image confusion matrices')
        npz_path = Path(record_path).parent / info['file']
        data = npz_path.read_bytes()
        if sha256_bytes(data) != info['sha256']:
            raise ResultsError(f'{npz_path} does not match the sha256 in {record_path}')
        with np.load(io.BytesIO(data)) as z:
            return {k: z[k] for k in z.files}

    def iter_records(self, suite: Optional[str] = None) -> Iterator[tuple]:
        """Yield ``(path, record)`` for every stored record (optionally of one suite), sorted."""
        base = self.root / suite if suite else self.root
        for path in sorted(base.rglob('*.json')):
            if path.name.startswith('.'):
                continue
            yield path, self.read(path)


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
    from .target_specs import hidden_class_of
    from .targeted_metrics import summarize_targeted
    out = metrics.summarize(conf_gt, conf_clean, conf_target)
    if not key.is_clean:
        out.update(summarize_targeted(conf_clean, conf_target, hidden_class_of(key.params)))
    return out

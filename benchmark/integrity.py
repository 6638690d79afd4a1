"""Integrity of stored results: every record checked on its own and against the others.

:func:`check_paths` runs on record files and folders (a whole results tree, one suite, one
model) and returns a list of :class:`Problem` (``file: field: reason``); it never raises for bad
content. ``tools/validate_results.py`` prints them; the leaderboard refuses the records they name.

Checks of one record (:func:`benchmark.store.inspect_record`): readable JSON object without
NaN/Infinity, schema v1, valid names, a path that matches its key, metrics equal to those its
matrices give, a per-image file that is present, unedited (sha256), loadable, has ``num_images``
rows and sums to the record's matrices.

Checks across the records of one ``(suite, dataset, model, scale)``, which describe the same images:

* one file per cell id (a copied record or folder otherwise counts twice);
* the same image list (``dataset.image_ids_sha256``);
* the same ground truth: per image, the row sums of ``vs_ground_truth`` (labelled pixels of each
  class) are equal in every cell, whatever the attack;
* the same image sizes: per image, the total of ``vs_clean`` (every pixel of the clean
  prediction) is equal in every attacked cell, and not below its labelled pixels;
* every attacked cell has its clean cell (the IoU ratio divides by it);
* provenance: git sha, config hash, creation time, seed, and the checkpoint's sha256 when a
  checkpoint is named;

and no temporary files (``.<name>.XXXXXXXX.tmp``) of interrupted writes.

Only numpy and the standard library are imported (besides :mod:`benchmark.store`).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from common.errors import ResultsError
from common.hashing import sha256_file

from .cells import CellKey
from .store import (NON_RECORD_DIRS, Problem, find_temporary, hidden_class_of, inspect_record,
                    record_files)

__all__ = ['Problem', 'CheckedRecord', 'check_paths', 'check_paths_counted', 'inspect_paths',
           'consistency_problems', 'completeness_problems', 'provenance_problems',
           'temporary_file_problems', 'orphan_problems']

_SHA256_RE = re.compile(r'^[0-9a-f]{64}$')


@dataclasses.dataclass
class CheckedRecord:
    """A record that passed the per-record checks, with what the cross-record checks need."""

    path: Path
    record: dict
    key: CellKey
    gt_pixels: Optional[np.ndarray] = None     #: (N, C) labelled pixels per image and class
    image_pixels: Optional[np.ndarray] = None  #: (N,) pixels of the clean prediction per image
    #: (N, C, C) per-image ``vs_clean`` matrices of cells hiding a class (per-image hiding rates)
    per_image_clean: Optional[np.ndarray] = None

    @property
    def group(self) -> Tuple[str, str, str, float]:
        """The cells that describe the same images: suite, dataset, model, scale."""
        return self.key.suite, self.key.dataset, self.key.model, self.key.scale


def inspect_paths(paths: Iterable[Union[str, Path]], root: Optional[Union[str, Path]] = None
                  ) -> Tuple[List[CheckedRecord], List[Problem]]:
    """Per-record checks of every record under ``paths``.

    Args:
        paths: Record files or folders.
        root: The results root when known (a record must then lie at
            ``<root>/<suite>/<model>/``); otherwise each record's last path components are checked.

    Returns:
        ``(records that passed, problems)``.

    Raises:
        ResultsError: A path does not exist (a usage error, not a problem of the results).
    """
    checked: List[CheckedRecord] = []
    problems: List[Problem] = []
    seen = set()
    for base in _existing(paths):
        for path in record_files(base):
            if path.resolve() in seen:   # the same file given twice (a folder and its parent)
                continue
            seen.add(path.resolve())
            record, arrays, found = inspect_record(path, root=root)
            problems += found
            if record is None:
                continue
            item = CheckedRecord(path, record, CellKey.from_dict(record['key']))
            if arrays is not None:
                if 'vs_ground_truth' in arrays:
                    item.gt_pixels = arrays['vs_ground_truth'].sum(axis=2, dtype=np.int64)
                if 'vs_clean' in arrays:
                    item.image_pixels = arrays['vs_clean'].sum(axis=(1, 2), dtype=np.int64)
                    if hidden_class_of(item.key.params) is not None:
                        item.per_image_clean = arrays['vs_clean']
            checked.append(item)
    return checked, problems


def _existing(paths: Iterable[Union[str, Path]]) -> List[Path]:
    out = []
    for base in paths:
        base = Path(base)
        if not base.exists():
            raise ResultsError(f'{base} does not exist; expected a results folder or a record '
                               '(.json) file')
        out.append(base)
    return out


def _groups(records: Sequence[CheckedRecord]) -> Dict[tuple, List[CheckedRecord]]:
    groups: Dict[tuple, List[CheckedRecord]] = defaultdict(list)
    for r in records:
        groups[r.group].append(r)
    return groups


def _reference(cells: List[CheckedRecord]) -> CheckedRecord:
    """The cell the others of a group are compared with: the clean cell, else the first."""
    clean = [c for c in cells if c.key.is_clean]
    return clean[0] if clean else cells[0]


def _majority(cells: List[CheckedRecord]) -> Optional[CheckedRecord]:
    """The first cell whose per-image pixel totals most cells share (no clean cell has them)."""
    counts: Dict[bytes, int] = defaultdict(int)
    for c in cells:
        counts[c.image_pixels.tobytes() + bytes(str(c.image_pixels.shape), 'ascii')] += 1
    if not cells:
        return None
    best = max(counts.values())
    return next(c for c in cells
                if counts[c.image_pixels.tobytes() + bytes(str(c.image_pixels.shape), 'ascii')] == best)


def consistency_problems(records: Sequence[CheckedRecord]) -> List[Problem]:
    """Duplicate cells and cells of one group that disagree on their images (see module doc).

    Each problem names the file that disagrees with its group's reference (its clean cell), so the
    leaderboard can refuse exactly those files.
    """
    problems: List[Problem] = []
    first: Dict[str, CheckedRecord] = {}
    for r in sorted(records, key=lambda r: str(r.path)):
        other = first.setdefault(r.key.cell_id, r)
        if other is not r:
            problems.append(Problem(str(r.path), 'cell_id', f'cell {r.key.cell_id} ({r.key.describe()}) '
                                    f'is also stored in {other.path}; keep one copy'))
    for cells in _groups(records).values():
        ref = _reference(cells)
        ref_ids = ref.record['dataset']['image_ids_sha256']
        ref_px_cell = _majority([c for c in cells if c.image_pixels is not None])
        ref_px = None if ref_px_cell is None else ref_px_cell.image_pixels
        for c in cells:
            where = str(c.path)
            if c.image_pixels is not None and c.gt_pixels is not None and (
                    c.image_pixels.shape != c.gt_pixels.shape[:1]
                    or (c.image_pixels < c.gt_pixels.sum(axis=1)).any()):
                problems.append(Problem(where, 'confusion.vs_clean', 'an image has fewer pixels (total '
                                        'of vs_clean) than labelled pixels (total of vs_ground_truth); '
                                        'the counts do not add up to the image sizes'))
            if c is ref:
                continue
            if c.record['dataset']['image_ids_sha256'] != ref_ids:
                problems.append(Problem(where, 'dataset.image_ids_sha256', 'differs from that of '
                                        f'{ref.path.name} (same suite, dataset and model): the cells '
                                        'were computed on different image lists'))
                continue
            if c.gt_pixels is not None and ref.gt_pixels is not None and (
                    c.gt_pixels.shape != ref.gt_pixels.shape
                    or not np.array_equal(c.gt_pixels, ref.gt_pixels)):
                problems.append(Problem(where, 'confusion.vs_ground_truth', 'the labelled pixels '
                                        'per image and class (row sums of the per-image matrices) '
                                        f'differ from those of {ref.path.name}; every cell of a model '
                                        'sees the same ground truth'))
            if c.image_pixels is not None and ref_px is not None and c is not ref_px_cell and (
                    c.image_pixels.shape != ref_px.shape or not np.array_equal(c.image_pixels, ref_px)):
                problems.append(Problem(where, 'confusion.vs_clean', 'the pixels per image (totals '
                                        f'of the per-image matrices) differ from those of '
                                        f'{ref_px_cell.path.name}; every image has the same size '
                                        'whatever the attack'))
    return problems


def completeness_problems(records: Sequence[CheckedRecord]) -> List[Problem]:
    """Attacked cells whose clean cell (the IoU ratio's denominator) is not stored."""
    ids = {r.key.cell_id for r in records}
    return [Problem(str(r.path), 'key', f'its clean cell {r.key.clean_key().file_stem()}.json is not '
                    'stored, so its IoU ratio cannot be computed; run the suite again to add it')
            for r in records if not r.key.is_clean and r.key.clean_key().cell_id not in ids]


def provenance_problems(records: Sequence[CheckedRecord]) -> List[Problem]:
    """Records whose provenance cannot tell how they were made."""
    problems = []
    for r in records:
        prov = r.record['provenance']
        where = str(r.path)
        sha = prov.get('git_sha')
        if not isinstance(sha, str) or not re.match(r'^[0-9a-f]{7,64}$', sha):
            problems.append(Problem(where, 'provenance.git_sha', f'is {sha!r}; expected the commit the '
                                    'record was computed with (run from a git checkout)'))
        if not prov.get('config_hash'):
            problems.append(Problem(where, 'provenance.config_hash', 'is empty; expected the hash of '
                                    'the configuration that produced the cell'))
        try:
            _dt.datetime.fromisoformat(prov.get('created', ''))
        except (TypeError, ValueError):
            problems.append(Problem(where, 'provenance.created', f'is {prov.get("created")!r}; expected '
                                    'an ISO 8601 time such as 2026-01-01T00:00:00+00:00'))
        if prov.get('checkpoint') and not _SHA256_RE.match(str(prov.get('checkpoint_sha256') or '')):
            problems.append(Problem(where, 'provenance.checkpoint_sha256', f'is '
                                    f'{prov.get("checkpoint_sha256")!r} but a checkpoint is named '
                                    f'({prov["checkpoint"]}); expected its sha256'))
        panel = prov.get('panel')
        if panel:   # the qualitative panel's images, relative to the results root
            path = Path(r.path).parents[2] / panel['path']
            if not path.is_file():
                problems.append(Problem(where, 'provenance.panel', f'names {panel["path"]}, which does '
                                        'not exist; recompute the cell (--force) to write it again'))
            elif sha256_file(path) != panel['sha256']:
                problems.append(Problem(where, 'provenance.panel', f'{panel["path"]} does not match '
                                        'the sha256 the record names; it was changed after the run'))
    return problems


def temporary_file_problems(paths: Iterable[Union[str, Path]]) -> List[Problem]:
    """Temporary files of interrupted writes (reported, not removed: the runner sweeps them while
    it holds the model's lock, so a live writer is never disturbed)."""
    temps = sorted({t.resolve(): t for base in _existing(paths) for t in find_temporary(base)}.values())
    return [Problem(str(t), '(file)', 'temporary file left by an interrupted write; it is removed '
                    'the next time the benchmark runs this model, or delete it') for t in temps]


def orphan_problems(paths: Iterable[Union[str, Path]]) -> List[Problem]:
    """Per-image files without their record (a write interrupted between the two renames)."""
    orphans = {}
    for base in _existing(paths):
        candidates = [base] if base.is_file() else base.rglob('*.npz')
        for npz in candidates:
            rel = npz.relative_to(base).parts if npz != base else (npz.name,)
            if npz.suffix != '.npz' or any(p.startswith('.') for p in rel) \
                    or any(d in rel[:-1] for d in NON_RECORD_DIRS):
                continue
            if not npz.with_suffix('.json').is_file():
                orphans[npz.resolve()] = npz
    return [Problem(str(p), '(file)', f'per-image file without its record {p.with_suffix(".json").name}; '
                    'delete it (the cell is recomputed when the suite runs again)')
            for p in sorted(orphans.values())]


def check_paths(paths: Iterable[Union[str, Path]]) -> List[Problem]:
    """Every problem of the records under ``paths`` (files or folders), per record and across
    records; an empty list when everything is consistent.

    Raises:
        ResultsError: A path does not exist.
    """
    return check_paths_counted(paths)[1]


def check_paths_counted(paths: Iterable[Union[str, Path]]) -> Tuple[int, List[Problem]]:
    """:func:`check_paths` and the number of record files it checked."""
    paths = [Path(p) for p in paths]
    n = len({f.resolve() for base in _existing(paths) for f in record_files(base)})
    records, problems = inspect_paths(paths)
    problems += consistency_problems(records)
    problems += completeness_problems(records)
    problems += provenance_problems(records)
    problems += temporary_file_problems(paths)
    problems += orphan_problems(paths)
    return n, problems

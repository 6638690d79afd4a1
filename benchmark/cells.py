"""Cells: the unit of work and of storage.

A cell is one model evaluated on one dataset under one attack configuration at one ε. Its
:class:`CellKey` lists everything that changes the numbers; its ``cell_id`` is a stable hash of the
key (canonical JSON), so a re-run finds what is already stored and transfer/multiscale protocols
can add fields (``source_model``, ``scale``) without changing the identity of existing cells.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, Optional

from common.names import canonical, canonical_json, check_name  # noqa: F401 (re-exported)

CLEAN = 'clean'  #: attack name of the no-attack cell that every IoU ratio divides by


@dataclasses.dataclass(frozen=True)
class CellKey:
    """Everything that identifies a result (see DESIGN.md)."""

    suite: str
    dataset: str
    model: str
    attack: str
    params: Dict[str, Any]
    epsilon: float
    source_model: Optional[str] = None
    scale: float = 1.0
    label_source: str = 'prediction'

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d['params'] = canonical(dict(self.params))
        d['epsilon'] = float(self.epsilon)
        d['scale'] = float(self.scale)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'CellKey':
        return cls(**d)

    @property
    def cell_id(self) -> str:
        """16 hex digits of sha256 over the canonical key."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:16]

    @property
    def is_clean(self) -> bool:
        return self.attack == CLEAN

    def clean_key(self) -> 'CellKey':
        """The key of the clean cell this cell's IoU ratio is relative to."""
        return CellKey(suite=self.suite, dataset=self.dataset, model=self.model, attack=CLEAN,
                       params={}, epsilon=0.0, source_model=None, scale=self.scale,
                       label_source=self.label_source)

    def file_stem(self) -> str:
        eps = f'{self.epsilon:g}'.replace('.', 'p')
        return f'{self.attack}_eps{eps}_{self.cell_id}'

    def describe(self) -> str:
        extra = f' from {self.source_model}' if self.source_model else ''
        return f'{self.model} / {self.attack} ε={self.epsilon:g}{extra}'

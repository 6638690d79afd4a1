"""Names that become path components, and canonical JSON for hashing keys.

Model, suite and attack names end up in file paths (``results/<suite>/<model>/<attack>_eps…``), and
cell ids are hashes of a key's JSON. Both rules live here so that every package (the runner, the
store, the model zoo's metafile loader, the submission tool) applies the same ones.
"""
from __future__ import annotations

import json
import re
from typing import Any

__all__ = ['NAME_PATTERN', 'check_name', 'canonical_json', 'canonical']

#: What a name may look like: letters, digits and ``_ . + -``, not starting with a punctuation mark.
NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*$')


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid name: letters, digits, ``_ . + -`` (it becomes a path component).

    Args:
        value: The name to check.
        what: What it names (``'model'``, ``'suite'``), for the message.

    Raises:
        ValueError: ``value`` is not a string of the allowed characters (callers that check user
            input turn it into a :class:`common.errors.ConfigError` naming where it came from).
    """
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ValueError(f'{what} name {value!r} is not valid: use letters, digits and _ . + - '
                         '(it becomes part of a file path)')
    return value


def canonical(obj: Any) -> Any:
    """``obj`` with dict keys as strings and integer-valued floats as ints, recursively (tuples → lists)."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; floats that are integers printed as such.

    Equal keys give equal strings whatever their dict order or ``8`` vs ``8.0``, so a hash of it
    (a cell id, a config hash) is stable across runs and Python versions.
    """
    return json.dumps(canonical(obj), sort_keys=True, separators=(',', ':'), ensure_ascii=True)

"""Paper tables: our numbers beside the published ones, and whether the papers' findings hold.

Published values live as data in ``leaderboard/published/<key>.yaml`` (one file per paper,
transcribed from the papers' text; format in ``leaderboard/published/README.md``), each with its
source: table or figure, row, column, metric, unit, dataset, model, attack and ε (0–255 pixel
units). :func:`load_published` reads and validates a file; a malformed entry is refused with a
:class:`PublishedDataError` naming the file, the field and the reason.

:func:`paper_reports` turns a results DataFrame (:func:`leaderboard.report.load_results`) into one
:class:`PaperReport` per paper:

* Arnab, Miksik and Torr, *On the Robustness of Semantic Segmentation Models to Adversarial
  Attacks*, CVPR 2018 (``arnab2018``): Fig. 2 and 3 (the values their text states), Table 1
  (transfer across scales), Fig. 4 and Sec. 7 (CRF-RNN);
* Metzen, Kumar, Brox and Fischer, *Universal Adversarial Perturbations Against Semantic Image
  Segmentation*, ICCV 2017 (``metzen2017``): Tables 1–3 and the transfer to PSPNet;
* Fischer, Kumar, Metzen and Brox, *Adversarial Examples for Semantic Image Segmentation*, ICLR
  workshop 2017 (``fischer2017``): Fig. 2;
* Xiang, Liu, Ye, Chen and Chen, *Adversarial Examples for Semantic Segmentation*
  (``xiang2022``): Tables 1–2, Fig. 3 and 4;
* Poursaeed, Katsman, Gao and Belongie, *Generative Adversarial Perturbations*, CVPR 2018
  (``poursaeed2018``): Tables 5–7.

Each :class:`PaperSection` holds a long-format table – one row per published value (or per
network of ours that stands in for the paper's network), the published number, the paper's
dataset, our number, our model, suite and dataset; a cell we have no record for says so ("not
run", "no such model in our zoo", "not recorded") in the ``ours status`` column – plus notes, the
verdicts on the paper's qualitative findings and the command that regenerates it. Values are
numbers in the row's ``unit`` (percent, not fractions; nats; queries).

**Findings.** Every finding of a YAML file (an ordering or a trend the paper states) has a check
of the same id in :data:`CHECKS` that computes it from our records and returns "agrees",
"disagrees" or "not testable" with the numbers behind it and the rule applied ("all" comparisons
when the paper says all / only / for every ε; "more than half" when it says typically or states
a general trend). Where the paper's own numbers are in the YAML file the same rule is also run on
them and reported: a rule under which the paper's own numbers contradicted its claim would be a
misreading of the claim.

Writers: :func:`to_markdown` and :func:`to_latex` (booktabs, through pandas' ``DataFrame.to_latex``,
which escapes ``_``, ``%`` and the other special characters). The HTML site renders the same
:class:`PaperReport` objects. :func:`make_paper_tables` writes ``<out>/papers/<key>.md`` and
``.tex`` (``tools/make_leaderboard.py --paper KEY``). Nothing here imports torch, attacks or model
code.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from common.errors import ConfigError, ResultsError

PUBLISHED_DIR = Path(__file__).resolve().parent / 'published'
#: The papers, in the order the reports are listed.
PAPER_KEYS = ('arnab2018', 'metzen2017', 'fischer2017', 'xiang2022', 'poursaeed2018')

AGREES, DISAGREES, NOT_TESTABLE = 'agrees', 'disagrees', 'not testable'
NOT_RUN, NO_MODEL, NOT_RECORDED, OK = 'not run', 'no such model in our zoo', 'not recorded', 'ok'

#: unit → (lowest, highest) allowed value (None: unbounded).
UNITS = {'%': (0.0, 100.0), 'nats': (0.0, None), 'queries': (0.0, None)}


@dataclass(frozen=True)
class Metric:
    """A published metric: its unit, the column of :func:`load_results` that holds ours (None:
    not recorded by our runner), the column of its spread over images, and the factor from our
    stored value to the unit (fractions → %)."""
    unit: str
    column: Optional[str]
    sd_column: Optional[str] = None
    scale: float = 100.0
    not_recorded: str = ''


METRICS: Dict[str, Metric] = {
    'IoU ratio': Metric('%', 'iou_ratio'),
    'mIoU': Metric('%', 'miou'),
    'pixel accuracy': Metric('%', 'pixel_accuracy'),
    'success rate': Metric('%', 'targeted_success_rate'),
    'class pixels hidden': Metric('%', 'class_pixels_hidden'),
    'background pixels preserved': Metric('%', 'background_preserved'),
    'class pixels hidden (mean over images)': Metric('%', 'hidden_image_mean', 'hidden_image_sd'),
    'background pixels preserved (mean over images)': Metric('%', 'preserved_image_mean',
                                                             'preserved_image_sd'),
    'IoU with the target': Metric('%', None, not_recorded='we record the pixel accuracy against the '
                                                           'target (success rate), not its IoU'),
    'mean top-class probability': Metric('%', 'mean_top_probability'),
    'mean entropy': Metric('nats', 'mean_entropy_nats', scale=1.0),
    'queries': Metric('queries', 'queries', scale=1.0),
}
#: Default decimals of our numbers per unit (a published value's ``decimals`` wins).
DECIMALS = {'%': 1, 'nats': 3, 'queries': 0}
RELATIONS = {'=': '', '>': '> ', '<': '< ', '>=': '≥ ', '<=': '≤ '}

TOP_FIELDS = {'key', 'title', 'citation', 'source_text', 'models', 'attacks', 'sections', 'groups',
              'findings', 'absent'}
VALUE_FIELDS = {'id', 'table', 'where', 'row', 'column', 'metric', 'unit', 'value', 'missing', 'relation',
                'dataset', 'dataset_note', 'model', 'source', 'attack', 'epsilon', 'epsilon_note',
                'approximate', 'how_read', 'decimals', 'note', 'ours'}
REQUIRED_VALUE_FIELDS = ('id', 'table', 'row', 'column', 'metric', 'unit', 'value', 'dataset', 'model',
                         'attack', 'epsilon')

#: Columns of every section table, in order.
COLUMNS = ['paper row', 'paper column', 'paper network', 'epsilon', 'metric', 'unit', 'published', 'published relation',
           'published approximate', 'published in', 'published dataset', 'published status', 'ours',
           'ours sd over images', 'our model', 'our suite', 'our dataset', 'ours status', 'value id']


class PublishedDataError(ConfigError):
    """A malformed published-values file: names the file, the field and the reason."""

    def __init__(self, file: Union[str, Path], field: str, reason: str):
        self.file, self.field, self.reason = str(file), field, reason
        super().__init__(f'{file}: {field}: {reason}')


# --------------------------------------------------------------------------------------------
# Published data: loading and validation
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PublishedValue:
    """One published number with its source (the merged fields of a YAML value)."""
    id: str
    table: str
    row: str
    column: str
    metric: str
    unit: str
    value: Optional[float]
    dataset: str
    model: str
    attack: str
    epsilon: Optional[float]
    section: str
    where: str = ''
    missing: str = ''
    relation: str = '='
    source: Optional[str] = None
    dataset_note: str = ''
    epsilon_note: str = ''
    approximate: bool = False
    how_read: str = ''
    decimals: Optional[int] = None
    note: str = ''
    ours: dict = field(default_factory=dict)


@dataclass
class Published:
    """A paper's published values, its networks and attacks mapped to ours, and its findings."""
    key: str
    title: str
    citation: str
    source_text: str
    models: Dict[str, dict]
    attacks: Dict[str, dict]
    sections: List[dict]
    values: List[PublishedValue]
    findings: List[dict]
    absent: List[dict]
    path: Path

    def value(self, value_id: str) -> PublishedValue:
        for v in self.values:
            if v.id == value_id:
                return v
        raise KeyError(value_id)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def published_path(key: str) -> Path:
    return PUBLISHED_DIR / f'{key}.yaml'


def load_published(key_or_path: Union[str, Path]) -> Published:
    """Read and validate one published-values file (a key of :data:`PAPER_KEYS` or a path).

    Raises :class:`PublishedDataError` (file, field, reason) for a missing or unknown field, a
    metric or unit outside :data:`METRICS` / :data:`UNITS`, a value out of its unit's range, an ε
    outside (0, 255], a label not defined under ``models`` / ``attacks`` / ``sections``, a
    duplicate id, an approximate value without ``how_read``, or a null value without ``missing``.
    """
    path = Path(key_or_path)
    if path.suffix not in ('.yaml', '.yml'):
        if str(key_or_path) not in PAPER_KEYS and not published_path(str(key_or_path)).is_file():
            raise ConfigError(f'no published values for paper {key_or_path!r}; expected one of '
                              f'{", ".join(PAPER_KEYS)} (files under {PUBLISHED_DIR})')
        path = published_path(str(key_or_path))
    import yaml
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except OSError as e:
        raise PublishedDataError(path, '(file)', f'cannot be read: {e}') from None
    except yaml.YAMLError as e:
        raise PublishedDataError(path, '(file)', f'is not valid YAML: {e}') from None
    return validate_published(data, path)


def validate_published(data, path: Union[str, Path]) -> Published:
    """:func:`load_published` on already parsed YAML ``data`` (``path`` names it in errors)."""
    path = Path(path)

    def fail(where: str, reason: str):
        raise PublishedDataError(path, where, reason)

    if not isinstance(data, dict):
        fail('(top level)', f'expected a mapping, got {type(data).__name__}')
    unknown = set(data) - TOP_FIELDS
    if unknown:
        fail(sorted(unknown)[0], f'unknown field (allowed: {", ".join(sorted(TOP_FIELDS))})')
    for name in sorted(TOP_FIELDS - {'absent'}):
        if name not in data:
            fail(name, 'missing (required)')
    for name in ('key', 'title', 'citation', 'source_text'):
        if not _text(data[name]):
            fail(name, 'must be a non-empty string')
    if data['key'] != path.stem:
        fail('key', f'{data["key"]!r} is not the file name {path.stem!r}')
    citation = data['citation'].strip()
    if not citation.startswith('@') or citation.count('{') != citation.count('}'):
        fail('citation', 'must be one BibTeX entry (starting with @, braces balanced)')

    models: Dict[str, dict] = {}
    if not isinstance(data['models'], list) or not data['models']:
        fail('models', 'must be a non-empty list')
    for i, m in enumerate(data['models']):
        where = f'models[{i}]'
        if not isinstance(m, dict):
            fail(where, 'must be a mapping with paper, ours (and optional note, family)')
        bad = set(m) - {'paper', 'ours', 'note', 'family'}
        if bad:
            fail(f'{where}.{sorted(bad)[0]}', 'unknown field (allowed: paper, ours, note, family)')
        if not _text(m.get('paper')):
            fail(f'{where}.paper', 'must be a non-empty string (the network as the paper names it)')
        if 'ours' not in m:
            fail(f'{where}.ours', 'missing: a zoo model id, a list of ids, "*" or null (no such model)')
        ours = m['ours']
        if not (ours is None or _text(ours) or (isinstance(ours, list) and ours and all(_text(o) for o in ours))):
            fail(f'{where}.ours', f'{ours!r} is not a model id, a non-empty list of ids, "*" or null')
        if m['paper'] in models:
            fail(f'{where}.paper', f'{m["paper"]!r} is listed twice')
        models[m['paper']] = m

    attacks = data['attacks']
    if not isinstance(attacks, dict) or not attacks:
        fail('attacks', 'must be a non-empty mapping of the paper\'s attack labels to ours')
    for label, a in attacks.items():
        where = f'attacks[{label!r}]'
        if not isinstance(a, dict) or 'attack' not in a:
            fail(where, 'must be a mapping with attack (and optional params, note)')
        bad = set(a) - {'attack', 'params', 'note'}
        if bad:
            fail(f'{where}.{sorted(bad)[0]}', 'unknown field (allowed: attack, params, note)')
        names = a['attack'] if isinstance(a['attack'], list) else [a['attack']]
        if not names or not all(_text(n) for n in names):
            fail(f'{where}.attack', 'must be an attack name or a non-empty list of names')
        if 'params' in a and not isinstance(a['params'], dict):
            fail(f'{where}.params', 'must be a mapping (the parameters a cell must have)')

    sections: List[dict] = []
    section_ids = set()
    if not isinstance(data['sections'], list) or not data['sections']:
        fail('sections', 'must be a non-empty list')
    for i, s in enumerate(data['sections']):
        where = f'sections[{i}]'
        if not isinstance(s, dict):
            fail(where, 'must be a mapping with id, heading, suites')
        bad = set(s) - {'id', 'heading', 'suites', 'notes', 'extra_ours'}
        if bad:
            fail(f'{where}.{sorted(bad)[0]}', 'unknown field (allowed: id, heading, suites, notes, extra_ours)')
        for name in ('id', 'heading'):
            if not _text(s.get(name)):
                fail(f'{where}.{name}', 'must be a non-empty string')
        if s['id'] in section_ids:
            fail(f'{where}.id', f'{s["id"]!r} is used twice')
        section_ids.add(s['id'])
        if not isinstance(s.get('suites'), list) or not s['suites'] or not all(_text(x) for x in s['suites']):
            fail(f'{where}.suites', 'must be a non-empty list of suite names (our numbers, in order of preference)')
        if not isinstance(s.get('notes', []), list) or not all(_text(n) for n in s.get('notes', [])):
            fail(f'{where}.notes', 'must be a list of strings')
        extra = s.get('extra_ours')
        if extra is not None:
            if not isinstance(extra, dict):
                fail(f'{where}.extra_ours', 'must be a mapping')
            bad = set(extra) - {'models', 'attacks', 'metrics', 'epsilons', 'missing', 'table', 'dataset'}
            if bad:
                fail(f'{where}.extra_ours.{sorted(bad)[0]}', 'unknown field')
            for label in extra.get('models', []):
                if label not in models:
                    fail(f'{where}.extra_ours.models', f'{label!r} is not a network under models')
            for label in extra.get('attacks') or fail(f'{where}.extra_ours.attacks', 'missing'):
                if label not in attacks:
                    fail(f'{where}.extra_ours.attacks', f'{label!r} is not an attack under attacks')
            for metric in extra.get('metrics') or fail(f'{where}.extra_ours.metrics', 'missing'):
                if metric not in METRICS:
                    fail(f'{where}.extra_ours.metrics', f'{metric!r} is not one of {", ".join(METRICS)}')
            for eps in extra.get('epsilons', []):
                if not _is_number(eps) or not 0 < eps <= 255:
                    fail(f'{where}.extra_ours.epsilons', f'{eps!r} is not an ε in (0, 255]')
            if not _text(extra.get('missing')):
                fail(f'{where}.extra_ours.missing', 'must say why the paper has no number for these rows')
            for name in ('table', 'dataset'):
                if name in extra and not _text(extra[name]):
                    fail(f'{where}.extra_ours.{name}', 'must be a non-empty string')
        sections.append(s)

    values: List[PublishedValue] = []
    ids = set()
    if not isinstance(data['groups'], list):
        fail('groups', 'must be a list')
    for gi, g in enumerate(data['groups']):
        gwhere = f'groups[{gi}]'
        if not isinstance(g, dict):
            fail(gwhere, 'must be a mapping with table, section, values (and optional where, defaults)')
        bad = set(g) - {'table', 'where', 'section', 'defaults', 'values'}
        if bad:
            fail(f'{gwhere}.{sorted(bad)[0]}', 'unknown field (allowed: table, where, section, defaults, values)')
        if g.get('section') not in section_ids:
            fail(f'{gwhere}.section', f'{g.get("section")!r} is not a section id ({", ".join(sorted(section_ids))})')
        defaults = g.get('defaults') or {}
        if not isinstance(defaults, dict):
            fail(f'{gwhere}.defaults', 'must be a mapping')
        if not isinstance(g.get('values'), list) or not g['values']:
            fail(f'{gwhere}.values', 'must be a non-empty list')
        for vi, raw in enumerate(g['values']):
            if not isinstance(raw, dict):
                fail(f'{gwhere}.values[{vi}]', 'must be a mapping')
            v = {**{k: g[k] for k in ('table', 'where') if k in g}, **defaults, **raw}
            vwhere = f'{gwhere}.values[{vi}]' + (f' (id {v["id"]})' if _text(v.get('id')) else '')
            values.append(_check_value(v, vwhere, g['section'], models, attacks, ids, fail))

    findings = data['findings']
    if not isinstance(findings, list):
        fail('findings', 'must be a list')
    finding_ids = set()
    for i, f in enumerate(findings):
        where = f'findings[{i}]'
        if not isinstance(f, dict):
            fail(where, 'must be a mapping with id, section, where, statement')
        bad = set(f) - {'id', 'section', 'where', 'statement'}
        if bad:
            fail(f'{where}.{sorted(bad)[0]}', 'unknown field (allowed: id, section, where, statement)')
        for name in ('id', 'where', 'statement'):
            if not _text(f.get(name)):
                fail(f'{where}.{name}', 'must be a non-empty string')
        if f['id'] in finding_ids:
            fail(f'{where}.id', f'{f["id"]!r} is used twice')
        finding_ids.add(f['id'])
        if f.get('section') not in section_ids:
            fail(f'{where}.section', f'{f.get("section")!r} is not a section id')

    absent = data.get('absent') or []
    if not isinstance(absent, list):
        fail('absent', 'must be a list')
    for i, a in enumerate(absent):
        if not isinstance(a, dict) or set(a) != {'table', 'note'} or not all(_text(a[k]) for k in a):
            fail(f'absent[{i}]', 'must be a mapping with exactly table and note (non-empty strings)')

    return Published(key=data['key'], title=data['title'].strip(), citation=citation + '\n',
                     source_text=data['source_text'], models=models, attacks=attacks, sections=sections,
                     values=values, findings=findings, absent=absent, path=path)


def _check_value(v: dict, where: str, section: str, models, attacks, ids: set, fail) -> PublishedValue:
    bad = set(v) - VALUE_FIELDS
    if bad:
        fail(f'{where}.{sorted(bad)[0]}', f'unknown field (allowed: {", ".join(sorted(VALUE_FIELDS))})')
    for name in REQUIRED_VALUE_FIELDS:
        if name not in v:
            fail(f'{where}.{name}', 'missing (required)')
    if not isinstance(v['id'], str) or not re.fullmatch(r'[a-z0-9][a-z0-9.\-]*', v['id']):
        fail(f'{where}.id', f'{v["id"]!r} must be lower-case letters, digits, "." and "-"')
    if v['id'] in ids:
        fail(f'{where}.id', f'{v["id"]!r} is used twice')
    ids.add(v['id'])
    for name in ('table', 'row', 'column', 'dataset'):
        if not _text(v[name]):
            fail(f'{where}.{name}', 'must be a non-empty string')
    metric = v['metric']
    if metric not in METRICS:
        fail(f'{where}.metric', f'{metric!r} is not one of {", ".join(METRICS)}')
    if v['unit'] not in UNITS:
        fail(f'{where}.unit', f'{v["unit"]!r} is not one of {", ".join(UNITS)}')
    if v['unit'] != METRICS[metric].unit:
        fail(f'{where}.unit', f'{v["unit"]!r} is not the unit of {metric} ({METRICS[metric].unit!r})')
    value = v['value']
    if value is None:
        if not _text(v.get('missing')):
            fail(f'{where}.missing', 'a null value must say why the paper has no number (missing: ...)')
    elif not _is_number(value):
        fail(f'{where}.value', f'{value!r} is not a finite number (or null with missing:)')
    else:
        low, high = UNITS[v['unit']]
        if (low is not None and value < low) or (high is not None and value > high):
            fail(f'{where}.value', f'{value!r} is outside the range of {v["unit"]!r} '
                                   f'([{low:g}, {"∞" if high is None else f"{high:g}"}])')
    relation = v.get('relation', '=')
    if relation not in RELATIONS:
        fail(f'{where}.relation', f'{relation!r} is not one of {", ".join(RELATIONS)}')
    if v['model'] not in models:
        fail(f'{where}.model', f'{v["model"]!r} has no entry under models (add it, with ours: null '
                               'when our zoo has no such network)')
    source = v.get('source')
    if source is not None and source not in models:
        fail(f'{where}.source', f'{source!r} has no entry under models')
    if v['attack'] not in attacks:
        fail(f'{where}.attack', f'{v["attack"]!r} has no entry under attacks')
    eps = v['epsilon']
    clean = attacks[v['attack']]['attack'] == 'clean'
    if eps is None:
        if not clean and not _text(v.get('epsilon_note')):
            fail(f'{where}.epsilon', 'null is allowed only for clean inputs or with epsilon_note')
    elif not _is_number(eps) or not 0 < eps <= 255:
        fail(f'{where}.epsilon', f'{eps!r} is not an L∞ bound in (0, 255] (0–255 pixel units)')
    approximate = v.get('approximate', False)
    if not isinstance(approximate, bool):
        fail(f'{where}.approximate', 'must be true or false')
    if approximate and not _text(v.get('how_read')):
        fail(f'{where}.how_read', 'an approximate value must say how it was read off the plot')
    decimals = v.get('decimals')
    if decimals is not None and (not isinstance(decimals, int) or isinstance(decimals, bool)
                                 or not 0 <= decimals <= 4):
        fail(f'{where}.decimals', f'{decimals!r} is not an integer in 0–4')
    ours = v.get('ours') or {}
    if not isinstance(ours, dict) or set(ours) - {'split', 'aggregate', 'all_epsilons'}:
        fail(f'{where}.ours', 'must be a mapping with split, aggregate, all_epsilons')
    if ours.get('split', 'val') not in ('train', 'val'):
        fail(f'{where}.ours.split', f'{ours["split"]!r} is not train or val')
    if ours.get('aggregate') not in (None, 'min', 'max'):
        fail(f'{where}.ours.aggregate', f'{ours["aggregate"]!r} is not min or max')
    if ours.get('aggregate') and models[v['model']].get('ours') != '*':
        fail(f'{where}.ours.aggregate', f'needs a model whose ours is "*" ({v["model"]!r} is not)')
    for name in ('where', 'missing', 'dataset_note', 'epsilon_note', 'how_read', 'note'):
        if name in v and v[name] is not None and not isinstance(v[name], str):
            fail(f'{where}.{name}', 'must be a string')
    return PublishedValue(
        id=v['id'], table=v['table'], row=str(v['row']), column=str(v['column']), metric=metric,
        unit=v['unit'], value=None if value is None else float(value), dataset=v['dataset'],
        model=v['model'], attack=v['attack'], epsilon=None if eps is None else float(eps),
        section=section, where=v.get('where') or '', missing=v.get('missing') or '', relation=relation,
        source=source, dataset_note=v.get('dataset_note') or '', epsilon_note=v.get('epsilon_note') or '',
        approximate=approximate, how_read=v.get('how_read') or '', decimals=decimals,
        note=v.get('note') or '', ours=dict(ours))


# --------------------------------------------------------------------------------------------
# Our records: lookup
# --------------------------------------------------------------------------------------------

def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def params_match(have: dict, want: dict) -> bool:
    """Whether a cell's parameters ``have`` include ``want``: a nested mapping matches key by key,
    ``None`` matches an absent or null key, lists and tuples compare element-wise."""
    for k, w in (want or {}).items():
        h = have.get(k) if isinstance(have, dict) else None
        if w is None:
            if h is not None:
                return False
        elif isinstance(w, dict):
            if not isinstance(h, dict) or not params_match(h, w):
                return False
        elif _norm(h) != _norm(w):
            return False
    return True


def _parse_params(text) -> dict:
    if isinstance(text, dict):
        return text
    try:
        out = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return {}
    return out if isinstance(out, dict) else {}


def _split_of(row) -> str:
    split = row.get('dataset_split') if hasattr(row, 'get') else None
    if isinstance(split, str) and split:
        return split
    parts = str(row['dataset']).split('-')
    return parts[1] if len(parts) >= 3 else ''


def our_dataset_label(dataset: str, num_images=None, name: str = '', split: str = '') -> str:
    """A readable name of one of our datasets, saying plainly that the built-in synthetic data are
    neither Cityscapes nor Pascal VOC."""
    parts = str(dataset).split('-')
    name = name or parts[0]
    split = split or (parts[1] if len(parts) >= 3 else '')
    n = '' if num_images is None or (isinstance(num_images, float) and math.isnan(num_images)) \
        else f', {int(num_images)} images'
    if name.startswith('synthetic'):
        return f'built-in synthetic street scenes, {split} split{n} (Cityscapes classes; not Cityscapes)'
    pretty = {'cityscapes': 'Cityscapes', 'voc': 'Pascal VOC 2012'}.get(name, name)
    return f'{pretty} {split}{n}'.strip()


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the lookup columns ``_params`` (dict), ``_split`` and ``_white_box``."""
    if df is None or df.empty:
        return pd.DataFrame(columns=['suite', 'dataset', 'model', 'attack', 'epsilon', 'source_model',
                                     'params', 'num_images', '_params', '_split', '_white_box'])
    out = df.copy()
    if 'source_model' not in out:
        out['source_model'] = None
    if 'params' not in out:
        out['params'] = '{}'
    out['_params'] = [_parse_params(p) for p in out['params']]
    out['_split'] = [_split_of(r) for _, r in out.iterrows()]
    out['_white_box'] = out['source_model'].isna()
    return out


@dataclass
class Cell:
    """One of our cells as a table shows it."""
    value: float
    sd: float
    model: str
    suite: str
    dataset: str
    row: Optional[pd.Series] = None


class Lookup:
    """Our cells for one paper: a prepared DataFrame and the paper's mappings."""

    def __init__(self, df: pd.DataFrame, published: Published):
        self.df = df
        self.pub = published
        self.memo: Dict[tuple, object] = {}   # cells() answers and the checks' matrices

    # -- mappings --------------------------------------------------------------------------
    def ours(self, paper_model: Optional[str]) -> Union[None, str, List[str]]:
        if paper_model is None:
            return None
        return self.pub.models[paper_model].get('ours')

    def attack(self, label: str) -> Tuple[List[str], dict]:
        a = self.pub.attacks[label]
        names = a['attack'] if isinstance(a['attack'], list) else [a['attack']]
        return names, dict(a.get('params') or {})

    # -- cells -----------------------------------------------------------------------------
    def cells(self, suites: Sequence[str], attack: str, model: Optional[str] = None,
              epsilon: Optional[float] = None, source: Optional[str] = None, split: str = 'val') -> pd.DataFrame:
        """Matching cells of the first suite of ``suites`` that has any: ``attack`` is a label of
        the paper's ``attacks``, ``model`` / ``source`` our ids (``source`` None or equal to
        ``model``: white-box), ``epsilon`` None for every ε."""
        key = ('cells', tuple(suites), attack, model, epsilon, source, split)
        if key not in self.memo:
            self.memo[key] = self._cells(suites, attack, model, epsilon, source, split)
        return self.memo[key]

    def _cells(self, suites, attack, model, epsilon, source, split) -> pd.DataFrame:
        df = self.df
        if df.empty:
            return df
        names, params = self.attack(attack)
        sel = df[df.attack.isin(names)]
        if model is not None:
            sel = sel[sel.model == model]
        if epsilon is not None and 'clean' not in names:
            sel = sel[np.isclose(sel.epsilon.astype(float), float(epsilon))]
        if source is None or source == model:
            sel = sel[sel._white_box]
        else:
            sel = sel[sel.source_model == source]
        sel = sel[(sel._split == 'train') if split == 'train' else (sel._split != 'train')]
        if params:
            sel = sel[pd.Series([params_match(p, params) for p in sel._params], index=sel.index, dtype=bool)]
        for suite in suites:
            hit = sel[sel.suite == suite]
            if not hit.empty:
                return hit
        return sel.iloc[0:0]

    def value(self, row: pd.Series, metric: str) -> Tuple[float, float]:
        """``(value, sd over images)`` of ``metric`` in ``row``, in the metric's unit (NaN: none)."""
        m = METRICS[metric]
        if m.column is None:
            return math.nan, math.nan
        v = row.get(m.column) if m.column in row.index else None
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = _from_record(row, m.column)
        sd = row.get(m.sd_column) if m.sd_column and m.sd_column in row.index else math.nan
        v = math.nan if v is None else float(v)
        sd = math.nan if sd is None else float(sd)
        return v * m.scale, sd * m.scale

    def one(self, suites, attack, model, metric, epsilon=None, source=None, split='val') -> Optional[Cell]:
        """The cell of ``model`` (one id) or None; the most images when several match."""
        hit = self.cells(suites, attack, model, epsilon, source, split)
        if hit.empty:
            return None
        row = hit.sort_values('num_images', ascending=False).iloc[0]
        v, sd = self.value(row, metric)
        return Cell(v, sd, model, row.suite, our_dataset_label(row.dataset, row.get('num_images'),
                                                               str(row.get('dataset_name') or ''),
                                                               str(row.get('dataset_split') or '')), row)

    def grid(self, suites, attack, model, metric, source=None, split='val') -> Dict[float, float]:
        """``{ε: value}`` of ``model`` over every ε of the first suite that has the attack."""
        hit = self.cells(suites, attack, model, None, source, split)
        out = {}
        for _, row in hit.sort_values('num_images', ascending=False).iterrows():
            eps = float(row.epsilon)
            if eps not in out:
                out[eps] = self.value(row, metric)[0]
        return {e: out[e] for e in sorted(out)}


def _from_record(row: pd.Series, column: str):
    """Values the record holds but an older DataFrame may lack (the prediction's confidence)."""
    keys = {'mean_top_probability': 'mean_top_probability', 'mean_entropy_nats': 'mean_entropy_nats'}
    path = row.get('path') if 'path' in row.index else None
    if column not in keys or not isinstance(path, str) or not path:
        return None
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    conf = (rec.get('attack_stats') or {}).get('prediction_confidence') or {}
    return conf.get(keys[column])


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------

@dataclass
class PaperSection:
    """One table of a paper beside ours: ``table`` (columns :data:`COLUMNS`, numbers in the row's
    unit), ``notes``, ``agreement`` (one line per finding: "agrees: ...", "disagrees: ...",
    "not testable: ..."), the ``command`` that regenerates it, a ``caption`` and the structured
    ``verdicts``."""
    heading: str
    table: pd.DataFrame
    notes: List[str]
    agreement: List[str]
    command: str
    caption: str = ''
    verdicts: List['Agreement'] = field(default_factory=list)
    paper_key: str = ''

    def display(self) -> Tuple[pd.DataFrame, List[str]]:
        """:func:`display_frame` of this section: text cells (published numbers with the paper's
        decimals, a missing number's reason) and the lines for the columns moved to the caption."""
        return display_frame(self, load_published(self.paper_key) if self.paper_key else None)


@dataclass
class PaperReport:
    """A paper: its key, title, BibTeX citation and sections."""
    key: str
    title: str
    citation: str
    sections: List[PaperSection]


@dataclass(frozen=True)
class Agreement:
    """The verdict on one finding of a paper, with the numbers behind it."""
    verdict: str
    finding_id: str
    statement: str
    where: str
    evidence: str
    paper_check: str = ''

    def __str__(self) -> str:
        text = f'{self.verdict}: {self.statement} ({self.where}) {self.evidence}'
        return text + (f' {self.paper_check}' if self.paper_check else '')


def suite_command(key: str, suites: Iterable[str]) -> str:
    runs = [f'.venv/bin/python tools/run_benchmark.py benchmark/suites/{s}.py' for s in suites]
    return ' && '.join(runs + [f'.venv/bin/python tools/make_leaderboard.py --paper {key}'])


def _row(pv: Optional[PublishedValue], cell: Optional[Cell], status: str, *, row=None, column=None,
         network=None, epsilon=None, metric=None, unit=None, our_model='', suite='', dataset='',
         published_status=None, published_in='', published_dataset='') -> dict:
    metric = metric or pv.metric
    eps = epsilon if pv is None else pv.epsilon
    return {
        'paper row': row if row is not None else pv.row,
        'paper column': column if column is not None else pv.column,
        'paper network': network if network is not None else pv.model,
        'epsilon': math.nan if eps is None else float(eps),
        'metric': metric, 'unit': unit or METRICS[metric].unit,
        'published': (pv.value if pv is not None and pv.value is not None else math.nan),
        'published relation': pv.relation if pv is not None else '=',
        'published approximate': bool(pv.approximate) if pv is not None else False,
        'published in': _published_in(pv) if pv is not None else published_in,
        'published dataset': pv.dataset if pv is not None else published_dataset,
        'published status': published_status or (OK if pv is not None and pv.value is not None
                                                  else (pv.missing if pv is not None else '')),
        'ours': cell.value if cell is not None else math.nan,
        'ours sd over images': cell.sd if cell is not None else math.nan,
        'our model': cell.model if cell is not None else our_model,
        'our suite': cell.suite if cell is not None else suite,
        'our dataset': cell.dataset if cell is not None else dataset,
        'ours status': status,
        'value id': pv.id if pv is not None else '',
    }


def _where_short(pv: PublishedValue) -> str:
    """The section of the paper a value's sentence is in (``Sec. 5.3``), '' when that adds nothing
    to its table."""
    short = pv.where.split(' (')[0] if pv.where else ''
    return '' if not short or short in pv.table or pv.table in short else short


def _published_in(pv: PublishedValue) -> str:
    short = _where_short(pv)
    return f'{pv.table}, {short}' if short else pv.table


def _status_of(cell: Optional[Cell], suites: Sequence[str], metric: str) -> str:
    if cell is None:
        return f'{NOT_RUN} (no record in {", ".join(suites)})'
    if math.isnan(cell.value):
        reason = METRICS[metric].not_recorded or 'the record does not hold it'
        return f'{NOT_RECORDED} ({reason})'
    return OK


def _rows_for_value(lk: Lookup, pv: PublishedValue, suites: Sequence[str]) -> List[dict]:
    ours = lk.ours(pv.model)
    split = pv.ours.get('split', 'val')
    if ours is None:
        return [_row(pv, None, NO_MODEL)]
    source = lk.ours(pv.source) if pv.source else None
    if isinstance(source, list):
        source = source[0]
    if ours == '*':
        names, _ = lk.attack(pv.attack)
        hit = lk.cells(suites, pv.attack, None, None if pv.ours.get('all_epsilons') else pv.epsilon,
                       None, split)
        if hit.empty:
            return [_row(pv, None, f'{NOT_RUN} (no record in {", ".join(suites)})',
                         our_model='every model of the suite')]
        vals = [(lk.value(r, pv.metric)[0], r) for _, r in hit.iterrows()]
        vals = [(v, r) for v, r in vals if not math.isnan(v)]
        if not vals:
            return [_row(pv, None, f'{NOT_RECORDED}', our_model='every model of the suite')]
        pick = min if pv.ours.get('aggregate') == 'min' else max
        v, r = pick(vals, key=lambda t: t[0])
        n_models = hit.model.nunique()
        label = r.get('attack_label') if isinstance(r.get('attack_label'), str) else r.attack
        where = f'{r.model}, {label}, ε = {float(r.epsilon):g}' if len(names) > 1 or pv.ours.get('all_epsilons') \
            else str(r.model)
        cell = Cell(v, math.nan, f'{pv.ours.get("aggregate", "max")} over {n_models} models: {where}',
                    r.suite, our_dataset_label(r.dataset, r.get('num_images'), str(r.get('dataset_name') or ''),
                                               str(r.get('dataset_split') or '')), r)
        return [_row(pv, cell, OK)]
    out = []
    for model in ([ours] if isinstance(ours, str) else ours):
        cell = lk.one(suites, pv.attack, model, pv.metric, pv.epsilon, source, split)
        out.append(_row(pv, cell, _status_of(cell, suites, pv.metric), our_model=model))
    return out


def _extra_rows(lk: Lookup, section: dict, have: set) -> List[dict]:
    """Rows for our cells of a section's ``extra_ours`` attacks that no published value covers
    (the paper's figure or table holds no number for them): one per network, attack, metric and
    ε of our records (or of ``extra_ours.epsilons`` when there is none); row = the attack."""
    extra = section.get('extra_ours')
    if not extra:
        return []
    suites = section['suites']
    labels = extra.get('models') or list(lk.pub.models)
    common = dict(published_status=extra['missing'], published_in=extra.get('table', ''),
                  published_dataset=extra.get('dataset', ''))
    out = []
    for label in labels:
        ours = lk.ours(label)
        ids = [] if ours is None or ours == '*' else ([ours] if isinstance(ours, str) else ours)
        for attack in extra['attacks']:
            for metric in extra['metrics']:
                if ours is None:
                    out.append(_row(None, None, NO_MODEL, row=attack, column='', network=label, metric=metric,
                                    **common))
                    continue
                for model in ids:
                    grid = lk.grid(suites, attack, model, metric)
                    epsilons = sorted(set(grid) | set(float(e) for e in extra.get('epsilons', [])))
                    for eps in epsilons:
                        if (label, attack, metric, eps) in have:
                            continue
                        cell = lk.one(suites, attack, model, metric, eps)
                        out.append(_row(None, cell, _status_of(cell, suites, metric), row=attack,
                                        column=f'ε = {eps:g}', network=label, epsilon=eps, metric=metric,
                                        our_model=model, **common))
    return out


def _frame(rows: List[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ('epsilon', 'published', 'ours', 'ours sd over images'):
        df[c] = pd.to_numeric(df[c], errors='coerce').astype(float)
    df['published approximate'] = df['published approximate'].astype(bool)
    return df


def _caption(table: pd.DataFrame) -> str:
    """Where the numbers of a section come from: the paper's datasets and ours."""
    theirs = sorted({d for d in table['published dataset'] if d})
    ours = sorted({d for d in table['our dataset'] if d})
    parts = []
    if theirs:
        parts.append('Published: ' + '; '.join(theirs) + '.')
    if ours:
        parts.append('Ours: ' + '; '.join(ours) + '.')
    if any('synthetic' in d for d in ours):
        parts.append('Our built-in synthetic data are neither Cityscapes nor Pascal VOC: compare '
                     'orderings and trends, not values.')
    return ' '.join(parts)


def _networks_section(pub: Published, df: pd.DataFrame) -> PaperSection:
    rows = []
    for label, m in pub.models.items():
        ours = m.get('ours')
        rows.append({'paper network': label,
                     'our model': (NO_MODEL if ours is None else 'every model of the suite' if ours == '*'
                                   else ours if isinstance(ours, str) else ', '.join(ours)),
                     'note': m.get('note') or ''})
    table = pd.DataFrame(rows, columns=['paper network', 'our model', 'note'])
    notes = [f'Published values transcribed from the paper\'s text ({pub.source_text}) into '
             f'leaderboard/published/{pub.key}.yaml.',
             'Our models are reduced-width demo versions trained on the built-in synthetic street '
             'scenes (model_zoo/README.md), so only orderings and trends can be compared with the paper.']
    notes += [f'Not in the paper\'s text: {a["table"]}: {a["note"]}.' for a in pub.absent]
    refused = df.attrs.get('refused') if df is not None else None
    if refused:
        notes.append(f'{len({p.file for p in refused})} record file(s) failed verification and are left '
                     'out (tools/validate_results.py lists them).')
    return PaperSection(heading='Networks: the paper\'s and ours', table=table, notes=notes, agreement=[],
                        paper_key=pub.key,
                        command=f'.venv/bin/python tools/make_leaderboard.py --paper {pub.key}',
                        caption='The paper\'s networks and the models of our zoo that stand in for them.')


def build_report(pub: Published, df: pd.DataFrame) -> PaperReport:
    """The :class:`PaperReport` of one paper from (unprepared) results ``df``."""
    lk = Lookup(prepare(df), pub)
    sections = [_networks_section(pub, df)]
    for s in pub.sections:
        values = [v for v in pub.values if v.section == s['id']]
        rows = []
        for pv in values:
            rows += _rows_for_value(lk, pv, s['suites'])
        have = {(pv.model, pv.attack, pv.metric, pv.epsilon) for pv in values}
        rows += _extra_rows(lk, s, have)
        table = _frame(rows)
        if s.get('extra_ours'):   # our curve and the paper's few values in one order: row, metric, ε
            order = {r: i for i, r in enumerate(dict.fromkeys(table['paper row']))}
            metrics = {m: i for i, m in enumerate(dict.fromkeys(table['metric']))}
            table = table.assign(_r=table['paper row'].map(order), _m=table['metric'].map(metrics)) \
                .sort_values(['_r', '_m', 'our model', 'epsilon'], kind='stable', na_position='first') \
                .drop(columns=['_r', '_m']).reset_index(drop=True)
        notes = list(s.get('notes', []))
        seen = set()
        for pv in values:
            if pv.where and pv.where not in seen:
                seen.add(pv.where)
                notes.append(f'{pv.table}: {pv.where}.' if _where_short(pv) else f'{pv.where}.')
            for text in (pv.dataset_note and f'Dataset of {pv.table}: {pv.dataset_note}.',
                         pv.epsilon_note and f'ε of {pv.id}: {pv.epsilon_note}.',
                         pv.note and f'{pv.table}: {pv.note}.',
                         pv.approximate and f'{pv.id} is approximate: {pv.how_read}.'):
                if text and text not in seen:
                    seen.add(text)
                    notes.append(text)
        for reason in dict.fromkeys(r for r in table['published status'] if r != OK and r):
            if ';' in reason and reason not in seen:
                seen.add(reason)
                notes.append(f'No published number: {reason}.')
        for label in sorted({pv.attack for pv in values} | set((s.get('extra_ours') or {}).get('attacks', []))):
            note = pub.attacks[label].get('note')
            if note and note not in seen:
                seen.add(note)
                notes.append(f'{label}: {note}.')
        verdicts = [run_check(f, lk) for f in pub.findings if f['section'] == s['id']]
        sections.append(PaperSection(heading=s['heading'], table=table, notes=notes,
                                     agreement=[str(v) for v in verdicts],
                                     command=suite_command(pub.key, s['suites']),
                                     caption=_caption(table), verdicts=verdicts, paper_key=pub.key))
    return PaperReport(key=pub.key, title=pub.title, citation=pub.citation, sections=sections)


def paper_reports(df: pd.DataFrame, keys: Optional[Sequence[str]] = None) -> List[PaperReport]:
    """One :class:`PaperReport` per paper of :data:`PAPER_KEYS` (or of ``keys``) from the results
    DataFrame of :func:`leaderboard.report.load_results` (an empty one gives reports whose cells all
    say "not run")."""
    out = []
    for key in keys or PAPER_KEYS:
        out.append(build_report(load_published(key), df if df is not None else pd.DataFrame()))
    return out


# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------

def _f(v: float) -> str:
    return '–' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.1f}'


def _rule(n_ok: int, n: int, rule: str) -> Optional[bool]:
    """The verdict of ``n_ok`` comparisons out of ``n`` holding under ``rule`` ('all' or 'majority');
    None when there is nothing to compare."""
    if n == 0:
        return None
    return n_ok == n if rule == 'all' else n_ok * 2 > n


def _rule_text(n_ok: int, n: int, rule: str) -> str:
    return f'{n_ok} of {n} hold (rule: {"all" if rule == "all" else "more than half"})'


@dataclass
class Outcome:
    """What a check computed: ``holds`` (None: not testable) and the numbers behind it."""
    holds: Optional[bool]
    evidence: str


CheckFn = Callable[['Lookup'], Tuple[Outcome, Optional[Outcome]]]
#: finding id → check; returns the outcome on our records and, where the paper's own numbers are
#: in the YAML, the same rule on them (else None).
CHECKS: Dict[str, CheckFn] = {}


def check(finding_id: str):
    def register(fn):
        CHECKS[finding_id] = fn
        return fn
    return register


def run_check(finding: dict, lk: Lookup) -> Agreement:
    fn = CHECKS.get(finding['id'])
    if fn is None:
        ours, paper = Outcome(None, 'No check is implemented for this finding.'), None
    else:
        ours, paper = fn(lk)
    verdict = NOT_TESTABLE if ours.holds is None else AGREES if ours.holds else DISAGREES
    paper_text = ''
    if paper is not None and paper.holds is not None:
        paper_text = (f'The paper\'s own numbers under the same rule: '
                      f'{"agree" if paper.holds else "disagree"} ({paper.evidence}).')
    return Agreement(verdict, finding['id'], finding['statement'], finding['where'], ours.evidence,
                     paper_text)


def _not_testable(why: str) -> Outcome:
    return Outcome(None, f'Ours: not testable: {why}.')


def _ids_by_label(lk: Lookup, *labels: str) -> List[Optional[str]]:
    out = []
    for label in labels:
        ours = lk.ours(label)
        out.append(ours if isinstance(ours, str) and ours != '*' else None)
    return out


# -- Arnab et al. 2018 ---------------------------------------------------------------------

_ARNAB_GRID_SUITES = ('demo',)
_FIG23_ATTACKS = ('FGSM', 'Iterative FGSM II')


def _grid_mean(lk: Lookup, suites, attack: str, model: str, metric='IoU ratio', source=None) -> Tuple[float, int]:
    grid = lk.grid(suites, attack, model, metric, source)
    vals = [v for v in grid.values() if not math.isnan(v)]
    return (float(np.mean(vals)) if vals else math.nan), len(vals)


@check('residual-more-robust')
def _residual_more_robust(lk: Lookup):
    fams = {}
    for label, m in lk.pub.models.items():
        fam, ours = m.get('family'), m.get('ours')
        if fam in ('residual', 'chain-like (VGG)') and isinstance(ours, str) and '.' not in ours:
            fams.setdefault(fam, set()).add(ours)
    pairs = [('FCN8s (ResNet-101)', 'FCN8s (VGG-16)'), ('Deeplab v2 ASPP (ResNet-101)', 'Deeplab v2 ASPP (VGG-16)')]
    n_ok = n = 0
    parts = []
    for attack in _FIG23_ATTACKS:
        means = {}
        for fam, models in fams.items():
            vals = [_grid_mean(lk, _ARNAB_GRID_SUITES, attack, m)[0] for m in sorted(models)]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                means[fam] = (float(np.mean(vals)), len(vals))
        if len(means) == 2:
            r, c = means['residual'], means['chain-like (VGG)']
            n += 1
            n_ok += r[0] > c[0]
            parts.append(f'{attack}: residual {_f(r[0])} ({r[1]} models) vs chain-like VGG {_f(c[0])} ({c[1]})')
        for res, vgg in pairs:
            a, b = _ids_by_label(lk, res, vgg)
            va, vb = (_grid_mean(lk, _ARNAB_GRID_SUITES, attack, x)[0] for x in (a, b))
            if not (math.isnan(va) or math.isnan(vb)):
                n += 1
                n_ok += va > vb
                parts.append(f'{attack}: {res.split(" (")[0]} ResNet {_f(va)} vs VGG {_f(vb)}')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('the demo suite has no records of these models'), None
    return Outcome(holds, f'Ours (IoU ratio in %, mean over the ε grid, demo suite): {"; ".join(parts)}; '
                          f'{_rule_text(n_ok, n, "all")}.'), None


def _attack_pairs(lk: Lookup, stronger: str, weaker: str, epsilons=None) -> Tuple[int, int, List[float], List[float]]:
    """Over every demo model and ε (or only ``epsilons``): how often ``stronger`` leaves a lower
    IoU ratio than ``weaker``."""
    n_ok = n = 0
    a_vals, b_vals = [], []
    models = sorted(set(lk.df[lk.df.suite.isin(_ARNAB_GRID_SUITES)].model)) if not lk.df.empty else []
    for model in models:
        ga = lk.grid(_ARNAB_GRID_SUITES, stronger, model, 'IoU ratio')
        gb = lk.grid(_ARNAB_GRID_SUITES, weaker, model, 'IoU ratio')
        for eps in sorted(set(ga) & set(gb)):
            if epsilons is not None and eps not in epsilons:
                continue
            if math.isnan(ga[eps]) or math.isnan(gb[eps]):
                continue
            n += 1
            n_ok += ga[eps] < gb[eps]
            a_vals.append(ga[eps])
            b_vals.append(gb[eps])
    return n_ok, n, a_vals, b_vals


@check('iterative-stronger-voc')
def _iterative_stronger(lk: Lookup):
    n_ok, n, a, b = _attack_pairs(lk, 'Iterative FGSM II', 'FGSM')
    holds = _rule(n_ok, n, 'majority')
    if holds is None:
        return _not_testable('the demo suite has no FGSM and Iterative FGSM II records'), None
    return Outcome(holds, f'Ours: Iterative FGSM II leaves the lower IoU ratio in {n_ok} of {n} '
                          f'(model, ε) cells of the demo suite (mean {_f(np.mean(a))} vs FGSM {_f(np.mean(b))}; '
                          f'rule: more than half). Our data are Cityscapes-like street scenes, not Pascal VOC.'), None


@check('single-step-stronger-cityscapes')
def _single_step_stronger(lk: Lookup):
    n_ok, n, a, b = _attack_pairs(lk, 'FGSM', 'Iterative FGSM II', epsilons={16.0, 32.0})
    holds = _rule(n_ok, n, 'majority')
    if holds is None:
        return _not_testable('the demo suite has no FGSM and Iterative FGSM II records at ε = 16, 32'), None
    return Outcome(holds, f'Ours: at ε = 16 and 32, FGSM leaves the lower IoU ratio in {n_ok} of {n} '
                          f'(model, ε) cells of the demo suite (mean {_f(np.mean(a))} vs Iterative FGSM II '
                          f'{_f(np.mean(b))}; rule: more than half).'), None


def _pairwise_grid(lk: Lookup, better: str, worse: str, attacks, metric: str, suites=_ARNAB_GRID_SUITES,
                   epsilons=None) -> Tuple[int, int, List[str]]:
    a, b = _ids_by_label(lk, better, worse)
    n_ok = n = 0
    parts = []
    for attack in attacks:
        ga = lk.grid(suites, attack, a, metric) if a else {}
        gb = lk.grid(suites, attack, b, metric) if b else {}
        common = [e for e in sorted(set(ga) & set(gb)) if epsilons is None or e in epsilons]
        common = [e for e in common if not (math.isnan(ga[e]) or math.isnan(gb[e]))]
        if not common:
            continue
        k = sum(ga[e] > gb[e] for e in common)
        n_ok += k
        n += len(common)
        parts.append(f'{attack}: higher at {k} of {len(common)} ε ('
                     + ', '.join(f'ε={e:g}: {_f(ga[e])} vs {_f(gb[e])}' for e in common) + ')')
    return n_ok, n, parts


@check('msc-beats-pspnet')
def _msc_beats_pspnet(lk: Lookup):
    n_ok, n, parts = _pairwise_grid(lk, 'Deeplab v2 Multiscale ASPP (ResNet-101)', 'PSPNet (ResNet-101)',
                                    _FIG23_ATTACKS, 'mIoU')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('the demo suite has no records of both models'), None
    return Outcome(holds, f'Ours (adversarial mIoU in %, multiscale Deeplab v2 vs PSPNet): {"; ".join(parts)}; '
                          f'{_rule_text(n_ok, n, "all")}.'), None


@check('msc-beats-single-scale')
def _msc_beats_single(lk: Lookup):
    a, b = _ids_by_label(lk, 'Deeplab v2 Multiscale ASPP (ResNet-101)', 'Deeplab v2 ASPP (ResNet-101)')
    n_ok = n = 0
    parts = []
    for attack in _FIG23_ATTACKS:
        va, vb = _grid_mean(lk, _ARNAB_GRID_SUITES, attack, a)[0], _grid_mean(lk, _ARNAB_GRID_SUITES, attack, b)[0]
        if math.isnan(va) or math.isnan(vb):
            continue
        n += 1
        n_ok += va > vb
        parts.append(f'{attack}: {_f(va)} vs {_f(vb)} (difference {va - vb:+.1f} points)')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('the demo suite has no records of both models'), None
    return Outcome(holds, f'Ours (IoU ratio in %, mean over the ε grid, multiscale vs single-scale): '
                          f'{"; ".join(parts)}; {_rule_text(n_ok, n, "all")}.'), None


@check('dilated-front-beats-context')
def _dilated_front(lk: Lookup):
    n_ok, n, parts = _pairwise_grid(lk, 'Dilated-Net front-end (VGG-16)', 'Dilated-Net front-end + context (VGG-16)',
                                    _FIG23_ATTACKS, 'IoU ratio')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('the demo suite has no records of both Dilated-Nets'), None
    return Outcome(holds, f'Ours (IoU ratio in %, front-end vs front-end + context): {"; ".join(parts)}; '
                          f'{_rule_text(n_ok, n, "all")}.'), None


@check('dilated-vs-lightweight')
def _dilated_vs_lightweight(lk: Lookup):
    d, e, i = _ids_by_label(lk, 'Dilated-Net front-end + context (VGG-16)', 'E-Net', 'ICNet')
    n_ok = n = 0
    wrong = []
    for attack in ('FGSM', 'FGSM II', 'Iterative FGSM II'):
        gd, ge, gi = (lk.grid(_ARNAB_GRID_SUITES, attack, m, 'IoU ratio') if m else {} for m in (d, e, i))
        for eps in sorted(set(gd) & set(ge) & set(gi)):
            more = gd[eps] > max(ge[eps], gi[eps])
            expected = attack in ('FGSM', 'FGSM II') and eps >= 4
            n += 1
            n_ok += more == expected
            if more != expected:
                wrong.append(f'{attack} ε={eps:g}: {_f(gd[eps])} vs E-Net {_f(ge[eps])}, ICNet {_f(gi[eps])}')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('the demo suite has no records of Dilated-Net, E-Net and ICNet'), None
    return Outcome(holds, f'Ours (IoU ratio in %, Dilated-Net front-end + context against the better of '
                          f'E-Net and ICNet, FGSM, FGSM II and Iterative FGSM II over the ε grid): the claim '
                          f'matches {n_ok} of {n} cells (rule: all)'
                          + (f'; not in: {"; ".join(wrong[:6])}{" ..." if len(wrong) > 6 else ""}' if wrong else '')
                          + '.'), None


def _table1_matrix(lk: Lookup, source_of_values: str) -> Dict[Tuple[str, str, str], float]:
    """``{(attack, row, source): IoU ratio}`` of Table 1, published (``'paper'``) or ours."""
    key = ('table1', source_of_values)
    if key not in lk.memo:
        lk.memo[key] = _table1_matrix_uncached(lk, source_of_values)
    return lk.memo[key]


def _table1_matrix_uncached(lk: Lookup, source_of_values: str) -> Dict[Tuple[str, str, str], float]:
    out = {}
    for pv in lk.pub.values:
        if pv.table != 'Table 1':
            continue
        if source_of_values == 'paper':
            if pv.value is not None:
                out[(pv.attack, pv.model, pv.source)] = pv.value
        else:
            model, source = lk.ours(pv.model), lk.ours(pv.source)
            if isinstance(model, str) and isinstance(source, str):
                cell = lk.one(['arnab2018_table1'], pv.attack, model, 'IoU ratio', pv.epsilon, source)
                if cell is not None and not math.isnan(cell.value):
                    out[(pv.attack, pv.model, pv.source)] = cell.value
    return out


_T1_SCALES = ('Deeplab v2 50% scale (ResNet)', 'Deeplab v2 75% scale (ResNet)', 'Deeplab v2 100% scale (ResNet)',
              'Deeplab v2 Multiscale (ResNet)')
_T1_SHORT = {'Deeplab v2 50% scale (ResNet)': '50%', 'Deeplab v2 75% scale (ResNet)': '75%',
             'Deeplab v2 100% scale (ResNet)': '100%', 'Deeplab v2 Multiscale (ResNet)': 'multiscale',
             'Deeplab v2 100% scale (VGG)': 'Deeplab v2 VGG', 'FCN8 (VGG)': 'FCN8 VGG', 'FCN8 (ResNet)': 'FCN8 ResNet'}


def _t1_rows(m) -> List[Tuple[str, str]]:
    return sorted({(a, r) for a, r, _ in m}, key=lambda t: (t[0], list(_T1_SHORT).index(t[1])
                                                            if t[1] in _T1_SHORT else 99))


def _table1_check(lk: Lookup, fn, rule: str, what: str):
    def run(m):
        n_ok, n, parts = fn(m)
        return Outcome(_rule(n_ok, n, rule), f'{_rule_text(n_ok, n, rule)}' + (f': {"; ".join(parts)}' if parts else ''))
    ours, paper = run(_table1_matrix(lk, 'ours')), run(_table1_matrix(lk, 'paper'))
    if ours.holds is None:
        return _not_testable('the arnab2018_table1 suite has no records'), paper
    return Outcome(ours.holds, f'Ours ({what}): {ours.evidence}.'), paper


@check('t1-white-box-strongest')
def _t1_diagonal(lk: Lookup):
    def fn(m):
        n_ok = n = 0
        parts = []
        for attack, row in _t1_rows(m):
            if row not in _T1_SCALES or (attack, row, row) not in m:
                continue
            others = [m[(attack, row, s)] for s in _T1_SCALES if s != row and (attack, row, s) in m]
            if not others:
                continue
            n += 1
            ok = m[(attack, row, row)] < min(others)
            n_ok += ok
            if not ok:
                parts.append(f'{attack}, {_T1_SHORT[row]}: diagonal {_f(m[(attack, row, row)])} vs {_f(min(others))}')
        return n_ok, n, parts
    return _table1_check(lk, fn, 'majority', 'IoU ratio in %; per attack and scale of Deeplab v2, the white-box '
                                             'cell below every transfer cell of its row; exceptions listed')


@check('t1-fgsm-transfers-better')
def _t1_fgsm_transfers(lk: Lookup):
    def fn(m):
        means = {}
        for attack in ('FGSM', 'Iterative FGSM II'):
            vals = [v for (a, r, s), v in m.items() if a == attack and r != s]
            if vals:
                means[attack] = float(np.mean(vals))
        if len(means) < 2:
            return 0, 0, []
        return int(means['FGSM'] < means['Iterative FGSM II']), 1, [
            f'mean transfer IoU ratio FGSM {_f(means["FGSM"])} vs Iterative FGSM II {_f(means["Iterative FGSM II"])}']
    return _table1_check(lk, fn, 'all', 'IoU ratio in %, off-diagonal cells')


@check('t1-s50-transfers-worst')
def _t1_s50(lk: Lookup):
    s50 = _T1_SCALES[0]

    def fn(m):
        n_ok = n = 0
        parts = []
        for attack, row in _t1_rows(m):
            if row == s50 or (attack, row, s50) not in m:
                continue
            others = [m[(attack, row, s)] for s in _T1_SCALES if s not in (s50, row) and (attack, row, s) in m]
            if not others:
                continue
            n += 1
            ok = m[(attack, row, s50)] > max(others)
            n_ok += ok
            if not ok:
                parts.append(f'{attack}, {_T1_SHORT.get(row, row)}: 50% {_f(m[(attack, row, s50)])} vs {_f(max(others))}')
        return n_ok, n, parts
    return _table1_check(lk, fn, 'majority', 'IoU ratio in %; per attack and row, the 50% source the least effective '
                                             'of the transfer sources; exceptions listed')


@check('t1-msc-source-best')
def _t1_msc_source(lk: Lookup):
    msc = _T1_SCALES[3]

    def fn(m):
        n_ok = n = 0
        parts = []
        for attack, row in _t1_rows(m):
            if row == msc or (attack, row, msc) not in m:
                continue
            others = [m[(attack, row, s)] for s in _T1_SCALES if s not in (msc, row) and (attack, row, s) in m]
            if not others:
                continue
            n += 1
            ok = m[(attack, row, msc)] < min(others)
            n_ok += ok
            if not ok:
                parts.append(f'{attack}, {_T1_SHORT.get(row, row)}: multiscale {_f(m[(attack, row, msc)])} vs {_f(min(others))}')
        return n_ok, n, parts
    return _table1_check(lk, fn, 'majority', 'IoU ratio in %; per attack and row other than the multiscale network, '
                                             'the multiscale source the most effective transfer source; exceptions listed')


@check('t1-msc-most-robust')
def _t1_msc_robust(lk: Lookup):
    msc = _T1_SCALES[3]

    def fn(m):
        n_ok = n = 0
        parts = []
        for attack in ('FGSM', 'Iterative FGSM II'):
            worst = {r: min(m[(attack, r, s)] for s in _T1_SCALES if (attack, r, s) in m)
                     for r in _T1_SCALES if any((attack, r, s) in m for s in _T1_SCALES)}
            if msc not in worst:
                continue
            for r in _T1_SCALES[:3]:
                if r in worst:
                    n += 1
                    n_ok += worst[msc] > worst[r]
            parts.append(f'{attack}: multiscale {_f(worst[msc])} vs ' +
                         ', '.join(f'{_T1_SHORT[r]} {_f(worst[r])}' for r in _T1_SCALES[:3] if r in worst))
        return n_ok, n, parts
    return _table1_check(lk, fn, 'all', 'IoU ratio in %, the worst case over the four Deeplab v2 sources, white-box '
                                        'included, of the multiscale network against each single scale')


_CRF = 'CRF-RNN (FCN8s + mean-field CRF)'
_CRF_FCN = 'FCN8s (the network CRF-RNN is built on)'
_CRF_UNARIES = 'CRF-RNN unaries (its FCN8s part)'
_CRF_SUITES = ('arnab2018_crf', 'demo')


def _crf_compare(lk: Lookup, attacks, higher: bool, what: str):
    crf, fcn = _ids_by_label(lk, _CRF, _CRF_FCN)
    n_ok = n = 0
    parts = []
    for attack in attacks:
        gc = lk.grid(_CRF_SUITES, attack, crf, 'IoU ratio') if crf else {}
        gf = lk.grid(_CRF_SUITES, attack, fcn, 'IoU ratio') if fcn else {}
        common = [e for e in sorted(set(gc) & set(gf)) if not (math.isnan(gc[e]) or math.isnan(gf[e]))]
        if not common:
            continue
        mc, mf = float(np.mean([gc[e] for e in common])), float(np.mean([gf[e] for e in common]))
        k = sum(gc[e] > gf[e] for e in common)
        n += 1
        n_ok += (mc > mf) if higher else (mc <= mf)
        parts.append(f'{attack}: CRF-RNN {_f(mc)} vs FCN {_f(mf)} (CRF-RNN higher at {k} of {len(common)} ε)')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('no white-box records of CRF-RNN and its FCN')
    return Outcome(holds, f'Ours ({what}): {"; ".join(parts)}; {_rule_text(n_ok, n, "all")}.')


@check('crf-untargeted')
def _crf_untargeted(lk: Lookup):
    return _crf_compare(lk, ('FGSM', 'Iterative FGSM'), True,
                        'IoU ratio in %, white-box, mean over the ε grid; CRF-RNN higher'), None


@check('crf-targeted')
def _crf_targeted(lk: Lookup):
    return _crf_compare(lk, ('FGSM II', 'Iterative FGSM II'), False,
                        'IoU ratio in %, white-box, mean over the ε grid; CRF-RNN not higher'), None


@check('crf-unaries')
def _crf_unaries(lk: Lookup):
    crf, unaries = _ids_by_label(lk, _CRF, _CRF_UNARIES)
    if crf is None or unaries is None:
        return _not_testable('no CRF-RNN or unaries in our zoo mapping'), None
    own = lk.grid(('arnab2018_crf',), 'FGSM', crf, 'IoU ratio')
    transfer = lk.grid(('arnab2018_crf',), 'FGSM', crf, 'IoU ratio', source=unaries)
    common = [e for e in sorted(set(own) & set(transfer)) if not (math.isnan(own[e]) or math.isnan(transfer[e]))]
    if not common:
        return _not_testable('the arnab2018_crf suite has no FGSM records from the unaries'), None
    mo, mt = float(np.mean([own[e] for e in common])), float(np.mean([transfer[e] for e in common]))
    k = sum(transfer[e] < own[e] for e in common)
    return Outcome(mt < mo, f'Ours (IoU ratio of CRF-RNN in %, FGSM, mean over the ε grid): from the unaries '
                            f'{_f(mt)} vs its own white-box FGSM {_f(mo)}; the unaries\' examples are more '
                            f'effective at {k} of {len(common)} ε (' +
                   ', '.join(f'ε={e:g}: {_f(transfer[e])} vs {_f(own[e])}' for e in common) + ').'), None


@check('crf-confidence')
def _crf_confidence(lk: Lookup):
    crf, fcn = _ids_by_label(lk, _CRF, _CRF_FCN)
    vals = {}
    for name, model in (('CRF-RNN', crf), ('FCN', fcn)):
        for metric in ('mean top-class probability', 'mean entropy'):
            cell = lk.one(_CRF_SUITES, 'none (clean inputs)', model, metric) if model else None
            vals[(name, metric)] = cell.value if cell is not None else math.nan
    if any(math.isnan(v) for v in vals.values()):
        return _not_testable('the clean records of CRF-RNN and its FCN hold no prediction confidence'), None
    ok = [vals[('CRF-RNN', 'mean top-class probability')] > vals[('FCN', 'mean top-class probability')],
          vals[('CRF-RNN', 'mean entropy')] < vals[('FCN', 'mean entropy')]]
    return Outcome(all(ok), f'Ours (clean inputs): mean top-class probability CRF-RNN '
                            f'{_f(vals[("CRF-RNN", "mean top-class probability")])} % vs FCN '
                            f'{_f(vals[("FCN", "mean top-class probability")])} %, mean entropy '
                            f'{vals[("CRF-RNN", "mean entropy")]:.3f} vs {vals[("FCN", "mean entropy")]:.3f} nats; '
                            f'{_rule_text(sum(ok), 2, "all")}.'), None


@check('eps025-degrades')
def _eps025(lk: Lookup):
    n_ok = n = 0
    worst = []
    for attack in _FIG23_ATTACKS:
        hit = lk.cells(_ARNAB_GRID_SUITES, attack, None, 0.25)
        for _, r in hit.iterrows():
            v = lk.value(r, 'IoU ratio')[0]
            if math.isnan(v):
                continue
            n += 1
            n_ok += v <= 91
            if v > 91:
                worst.append(f'{r.model} {attack} {_f(v)}')
    holds = _rule(n_ok, n, 'all')
    if holds is None:
        return _not_testable('the demo suite has no records at ε = 0.25'), None
    return Outcome(holds, f'Ours (IoU ratio in % at ε = 0.25, every demo model, FGSM and Iterative FGSM II): '
                          f'{_rule_text(n_ok, n, "all")}' + (f'; above 91: {", ".join(worst)}' if worst else '') + '.'), None


# -- Metzen et al. 2017 --------------------------------------------------------------------

_METZEN_SUITES = ('metzen2017', 'metzen2017_transfer')
_STATIC = 'universal, static target'
_HIDE = 'universal, hide pedestrians (ω = 0.9999, periodic tile)'


def _metzen_fcn(lk: Lookup) -> Optional[str]:
    return _ids_by_label(lk, 'FCN-8s (VGG-16)')[0]


def _paper_grid(lk: Lookup, table: str, metric: str, row_prefix: str) -> Dict[float, float]:
    return {pv.epsilon: pv.value for pv in lk.pub.values
            if pv.table == table and pv.metric == metric and pv.row.startswith(row_prefix) and pv.value is not None}


@check('m-train-val-close')
def _m_train_val(lk: Lookup):
    def run(train, val):
        common = sorted(set(train) & set(val))
        gaps = [abs(train[e] - val[e]) for e in common]
        n_ok = sum(g <= 5 for g in gaps)
        return Outcome(_rule(n_ok, len(common), 'all'),
                       ', '.join(f'ε={e:g}: {_f(train[e])} vs {_f(val[e])}' for e in common)
                       + f'; gap at most 5 points: {_rule_text(n_ok, len(common), "all")}')
    fcn = _metzen_fcn(lk)
    paper = run(_paper_grid(lk, 'Table 1', 'success rate', 'Training'), _paper_grid(lk, 'Table 1', 'success rate', 'Validation'))
    ours = run(lk.grid(_METZEN_SUITES, _STATIC, fcn, 'success rate', split='train'),
               lk.grid(_METZEN_SUITES, _STATIC, fcn, 'success rate'))
    if ours.holds is None:
        return _not_testable('no static-target records on both the fitting and the held-out split'), paper
    return Outcome(ours.holds, f'Ours (success rate in %, fitting vs held-out images): {ours.evidence}.'), paper


def _increasing(grid: Dict[float, float]) -> Tuple[int, int]:
    keys = sorted(k for k in grid if not math.isnan(grid[k]))
    pairs = list(zip(keys, keys[1:]))
    return sum(grid[b] > grid[a] for a, b in pairs), len(pairs)


@check('m-success-grows-with-eps')
def _m_grows(lk: Lookup):
    def run(g):
        n_ok, n = _increasing(g)
        return Outcome(_rule(n_ok, n, 'all'), ', '.join(f'ε={e:g}: {_f(v)}' for e, v in sorted(g.items()))
                       + f'; rises at each step: {_rule_text(n_ok, n, "all")}')
    paper = run(_paper_grid(lk, 'Table 1', 'success rate', 'Validation'))
    ours = run(lk.grid(_METZEN_SUITES, _STATIC, _metzen_fcn(lk), 'success rate'))
    if ours.holds is None:
        return _not_testable('fewer than two ε with static-target records on held-out images'), paper
    return Outcome(ours.holds, f'Ours (success rate in %, held-out images): {ours.evidence}.'), paper


@check('m-hiding-works')
def _m_hiding(lk: Lookup):
    cell = lk.one(('metzen2017',), _HIDE, _metzen_fcn(lk), 'class pixels hidden', 10)
    paper_v = _paper_grid(lk, 'Table 2', 'class pixels hidden', 'Validation').get(10.0)
    paper = Outcome(paper_v > 50, f'{_f(paper_v)} % hidden at ε = 10') if paper_v is not None else None
    if cell is None or math.isnan(cell.value):
        return _not_testable('the metzen2017 suite has no hiding record at ε = 10'), paper
    return Outcome(cell.value > 50, f'Ours (held-out images, ε = 10): {_f(cell.value)} % of person pixels hidden '
                                    f'(rule: more than 50 %).'), paper


@check('m-rest-intact')
def _m_rest(lk: Lookup):
    def run(g):
        n_ok = sum(v >= 84 for v in g.values())
        return Outcome(_rule(n_ok, len(g), 'all'), ', '.join(f'ε={e:g}: {_f(v)}' for e, v in sorted(g.items()))
                       + f'; at least 84 % (the lowest value of Table 2): {_rule_text(n_ok, len(g), "all")}')
    paper = run(_paper_grid(lk, 'Table 2', 'background pixels preserved', 'Validation'))
    g = {e: v for e, v in lk.grid(('metzen2017',), _HIDE, _metzen_fcn(lk), 'background pixels preserved').items()
         if not math.isnan(v)}
    ours = run(g)
    if ours.holds is None:
        return _not_testable('the metzen2017 suite has no hiding records'), paper
    return Outcome(ours.holds, f'Ours (background preserved in %, held-out images): {ours.evidence}.'), paper


@check('m-omega-tradeoff')
def _m_omega(lk: Lookup):
    order = ['universal, hide pedestrians (unweighted J_ss, "ω = no")', 'universal, hide pedestrians (ω = 0.9)',
             'universal, hide pedestrians (ω = 0.99)', _HIDE]
    names = ['no', '0.9', '0.99', '0.9999']
    fcn = _metzen_fcn(lk)
    hidden, kept = {}, {}
    for name, attack in zip(names, order):
        h = lk.one(('metzen2017',), attack, fcn, 'class pixels hidden', 10)
        k = lk.one(('metzen2017',), attack, fcn, 'background pixels preserved', 10)
        if h is not None and k is not None and not (math.isnan(h.value) or math.isnan(k.value)):
            hidden[name], kept[name] = h.value, k.value
    have = [n for n in names if n in hidden]
    if len(have) < 2:
        return _not_testable('the metzen2017 suite has fewer than two ω at ε = 10'), None
    pairs = list(zip(have, have[1:]))
    n_ok = sum(hidden[b] >= hidden[a] for a, b in pairs) + sum(kept[b] <= kept[a] for a, b in pairs)
    n = 2 * len(pairs)
    return Outcome(_rule(n_ok, n, 'all'), 'Ours (held-out images, ε = 10; ω = no is the unweighted loss, '
                   'i.e. ω = 0.5): ' + '; '.join(f'ω = {w}: hidden {_f(hidden[w])}, preserved {_f(kept[w])}'
                                                for w in have)
                   + f'; hidden never falls and preserved never rises as ω grows: {_rule_text(n_ok, n, "all")}.'), None


@check('m-transfer-untargeted-only')
def _m_transfer(lk: Lookup):
    fcn = _metzen_fcn(lk)
    own = lk.one(('metzen2017_transfer', 'metzen2017'), _STATIC, fcn, 'success rate', 10)
    hit = lk.cells(('metzen2017_transfer',), _STATIC, None, 10, source=fcn) if fcn else lk.df.iloc[0:0]
    hit = hit[hit.model != fcn] if not hit.empty else hit
    if own is None or hit.empty:
        return _not_testable('the metzen2017_transfer suite has no records'), None
    n_ok = n = 0
    parts = []
    for _, r in hit.iterrows():
        ratio, success = lk.value(r, 'IoU ratio')[0], lk.value(r, 'success rate')[0]
        n += 2
        n_ok += (ratio < 95) + (success <= own.value - 10)
        parts.append(f'{r.model}: IoU ratio {_f(ratio)}, success {_f(success)}')
    return Outcome(_rule(n_ok, n, 'all'), f'Ours (ε = 10, held-out images; the source FCN\'s own success '
                   f'{_f(own.value)} %): {"; ".join(parts)}; every other network loses accuracy (IoU ratio '
                   f'below 95 %) while its success rate stays at least 10 points below the source\'s: '
                   f'{_rule_text(n_ok, n, "all")}.'), None


# -- Fischer et al. 2017 -------------------------------------------------------------------

_F_ENTIRE = 'hide persons, noise on the entire image'
_F_RESTRICTED = 'hide persons, noise restricted to person pixels'
_F_HIDDEN = 'class pixels hidden (mean over images)'
_F_KEPT = 'background pixels preserved (mean over images)'


def _fischer_models(lk: Lookup) -> List[str]:
    ours = lk.ours('FCN8 (VGG-16)')
    return [] if ours is None else [ours] if isinstance(ours, str) else list(ours)


def _per_model(lk: Lookup, fn) -> Outcome:
    results = [(m, fn(m)) for m in _fischer_models(lk)]
    tested = [(m, o) for m, o in results if o.holds is not None]
    if not tested:
        return _not_testable('the fischer2017 suite has no records of ' + ', '.join(_fischer_models(lk)))
    n_ok = sum(o.holds for _, o in tested)
    untested = [m for m, o in results if o.holds is None]
    return Outcome(n_ok == len(tested), 'Ours: ' + '; '.join(f'{m}: {o.evidence}' for m, o in tested)
                   + f'; holds for {n_ok} of {len(tested)} models run (rule: all)'
                   + (f'; not run: {", ".join(untested)}' if untested else '') + '.')


@check('f-hide-and-preserve')
def _f_hide(lk: Lookup):
    def fn(model):
        h = lk.one(('fischer2017',), _F_ENTIRE, model, _F_HIDDEN, 10)
        k = lk.one(('fischer2017',), _F_ENTIRE, model, _F_KEPT, 10)
        if h is None or k is None or math.isnan(h.value) or math.isnan(k.value):
            return Outcome(None, '')
        return Outcome(h.value > 85 and k.value > 97, f'ε = 10: {_f(h.value)} % hidden, {_f(k.value)} % preserved')
    return _per_model(lk, fn), None


@check('f-restricted-preserves-more')
def _f_restricted_kept(lk: Lookup):
    def fn(model):
        ge = lk.grid(('fischer2017',), _F_ENTIRE, model, _F_KEPT)
        gr = lk.grid(('fischer2017',), _F_RESTRICTED, model, _F_KEPT)
        common = sorted(set(ge) & set(gr))
        if not common:
            return Outcome(None, '')
        k = sum(gr[e] >= ge[e] for e in common)
        return Outcome(k == len(common), f'background preserved restricted vs entire at {k} of {len(common)} ε ('
                       + ', '.join(f'ε={e:g}: {_f(gr[e])} vs {_f(ge[e])}' for e in common) + ')')
    return _per_model(lk, fn), None


@check('f-restricted-recovers')
def _f_recovers(lk: Lookup):
    def fn(model):
        ge = lk.grid(('fischer2017',), _F_ENTIRE, model, _F_HIDDEN)
        gr = lk.grid(('fischer2017',), _F_RESTRICTED, model, _F_HIDDEN)
        common = sorted(set(ge) & set(gr))
        if len(common) < 2:
            return Outcome(None, '')
        below = gr[common[0]] < ge[common[0]]
        n_up, n = _increasing({e: gr[e] for e in common})
        return Outcome(below and n_up == n, f'person pixels hidden with restricted noise '
                       + ', '.join(f'ε={e:g}: {_f(gr[e])} (entire {_f(ge[e])})' for e in common)
                       + f'; below the entire-image noise at the smallest ε: {"yes" if below else "no"}; '
                         f'rises at {n_up} of {n} steps')
    return _per_model(lk, fn), None


# -- Xiang et al. ----------------------------------------------------------------------------

_X_SUITES_T1 = ('xiang', 'xiang_transfer')
_X_PGD = ('PGD-20', 'PGD-40', 'PGD-60', 'PGD-80', 'PGD-100', 'PGD-200')


def _xiang_table1(lk: Lookup, which: str) -> Dict[Tuple[str, str], float]:
    out = {}
    for pv in lk.pub.values:
        if pv.table != 'Table 1':
            continue
        if which == 'paper':
            if pv.value is not None:
                out[(pv.model, pv.attack)] = pv.value
        else:
            model = lk.ours(pv.model)
            if isinstance(model, str):
                cell = lk.one(_X_SUITES_T1, pv.attack, model, 'pixel accuracy', pv.epsilon)
                if cell is not None and not math.isnan(cell.value):
                    out[(pv.model, pv.attack)] = cell.value
    return out


def _x_both(lk: Lookup, fn, what: str, rule: str, not_testable: str):
    def run(m):
        n_ok, n, parts = fn(m)
        return Outcome(_rule(n_ok, n, rule), _rule_text(n_ok, n, rule) + (f': {"; ".join(parts)}' if parts else ''))
    ours, paper = run(_xiang_table1(lk, 'ours')), run(_xiang_table1(lk, 'paper'))
    if ours.holds is None:
        return _not_testable(not_testable), paper
    return Outcome(ours.holds, f'Ours ({what}): {ours.evidence}.'), paper


@check('x-pgd-strongest')
def _x_pgd(lk: Lookup):
    def fn(m):
        n_ok = n = 0
        parts = []
        for model in sorted({k[0] for k in m}):
            pgd = [a for a in _X_PGD if (model, a) in m]
            others = [a for a in ('FGSM', 'MI-FGSM') if (model, a) in m]
            if not pgd or not others:
                continue
            best = pgd[-1]
            for a in others:
                n += 1
                n_ok += m[(model, best)] < m[(model, a)]
            parts.append(f'{model}: {best} {_f(m[(model, best)])} vs ' + ', '.join(f'{a} {_f(m[(model, a)])}' for a in others))
        return n_ok, n, parts
    return _x_both(lk, fn, 'pixel accuracy in %, ε = 8; PGD with the most iterations run against FGSM and MI-FGSM',
                   'all', 'no white-box PGD and FGSM / MI-FGSM records of the same model (suites xiang, xiang_transfer)')


@check('x-pgd-more-iterations')
def _x_pgd_iterations(lk: Lookup):
    def fn(m):
        n_ok = n = 0
        parts = []
        for model in sorted({k[0] for k in m}):
            g = {int(a.split('-')[1]): m[(model, a)] for a in _X_PGD if (model, a) in m}
            if len(g) < 2:
                continue
            keys = sorted(g)
            for a, b in zip(keys, keys[1:]):
                n += 1
                n_ok += g[b] < g[a]
            parts.append(f'{model}: ' + ', '.join(f'PGD-{k} {_f(g[k])}' for k in keys))
        return n_ok, n, parts
    return _x_both(lk, fn, 'pixel accuracy in %, ε = 8; falls at each step', 'all',
                   'no model has PGD records with two iteration counts of Table 1 (suites xiang, xiang_transfer)')


@check('x-resnet-more-robust')
def _x_resnet(lk: Lookup):
    family = {label: m.get('family') for label, m in lk.pub.models.items()}

    def fn(m):
        n_ok = n = 0
        parts = []
        for attack in ('none (clean inputs)', 'FGSM', 'MI-FGSM') + _X_PGD:
            r = [v for (mod, a), v in m.items() if a == attack and family.get(mod) == 'ResNet']
            g = [v for (mod, a), v in m.items() if a == attack and family.get(mod) == 'VGG']
            if not r or not g:
                continue
            n += 1
            n_ok += np.mean(r) > np.mean(g)
            parts.append(f'{"clean" if attack.startswith("none") else attack}: ResNet {_f(np.mean(r))} vs VGG {_f(np.mean(g))}')
        return n_ok, n, parts
    return _x_both(lk, fn, 'pixel accuracy in %, mean per backbone family, per attack', 'majority',
                   'no records of both families (suites xiang, xiang_transfer)')


def _xiang_table2(lk: Lookup, which: str) -> Dict[Tuple[str, str, str], float]:
    out = {}
    for pv in lk.pub.values:
        if pv.table != 'Table 2':
            continue
        if which == 'paper':
            out[(pv.attack, pv.source, pv.model)] = pv.value
        else:
            model, source = lk.ours(pv.model), lk.ours(pv.source)
            if isinstance(model, str) and isinstance(source, str):
                cell = lk.one(('xiang_transfer',), pv.attack, model, 'pixel accuracy', pv.epsilon, source)
                if cell is not None and not math.isnan(cell.value):
                    out[(pv.attack, pv.source, pv.model)] = cell.value
    return out


def _x_t2_both(lk: Lookup, fn, what: str, rule: str):
    def run(m):
        n_ok, n, parts = fn(m)
        return Outcome(_rule(n_ok, n, rule), _rule_text(n_ok, n, rule) + (f': {"; ".join(parts)}' if parts else ''))
    ours, paper = run(_xiang_table2(lk, 'ours')), run(_xiang_table2(lk, 'paper'))
    if ours.holds is None:
        return _not_testable('the xiang_transfer suite has no records'), paper
    return Outcome(ours.holds, f'Ours ({what}): {ours.evidence}.'), paper


@check('x-mifgsm-transfers-better')
def _x_mifgsm(lk: Lookup):
    def fn(m):
        pairs = [(s, t) for a, s, t in m if a == 'MI-FGSM' and s != t and ('PGD-20', s, t) in m]
        n_ok = sum(m[('MI-FGSM', s, t)] < m[('PGD-20', s, t)] for s, t in pairs)
        parts = []
        if pairs:
            parts.append(f'mean transfer accuracy MI-FGSM {_f(np.mean([m[("MI-FGSM", s, t)] for s, t in pairs]))} '
                         f'vs PGD-20 {_f(np.mean([m[("PGD-20", s, t)] for s, t in pairs]))}')
        return n_ok, len(pairs), parts
    return _x_t2_both(lk, fn, 'pixel accuracy in %, ε = 8; per (source, target) pair with source ≠ target, '
                              'MI-FGSM leaves the lower accuracy', 'majority')


@check('x-same-backbone-transfers')
def _x_same_backbone(lk: Lookup):
    family = {label: m.get('family') for label, m in lk.pub.models.items()}

    def fn(m):
        n_ok = n = 0
        parts = []
        for attack in ('MI-FGSM', 'PGD-20'):
            same = [v for (a, s, t), v in m.items() if a == attack and s != t and family.get(s) == family.get(t)]
            cross = [v for (a, s, t), v in m.items() if a == attack and family.get(s) != family.get(t)]
            if not same or not cross:
                continue
            n += 1
            n_ok += np.mean(same) < np.mean(cross)
            parts.append(f'{attack}: same backbone {_f(np.mean(same))} vs other backbone {_f(np.mean(cross))}')
        return n_ok, n, parts
    return _x_t2_both(lk, fn, 'pixel accuracy in %, ε = 8, mean over transfer pairs', 'all')


def _x_res50(lk: Lookup) -> Optional[str]:
    return _ids_by_label(lk, 'FCN-Res50')[0]


@check('x-fig3-iterations')
def _x_fig3(lk: Lookup):
    model = _x_res50(lk)
    g = {}
    for a in _X_PGD[:5]:
        cell = lk.one(('xiang',), a, model, 'pixel accuracy', 8) if model else None
        if cell is not None and not math.isnan(cell.value):
            g[int(a.split('-')[1])] = cell.value
    if len(g) < 3:
        return _not_testable('the xiang suite has fewer than three PGD iteration counts for ' + str(model)), None
    keys = sorted(g)
    drops = [g[a] - g[b] for a, b in zip(keys, keys[1:])]
    falls = sum(d > 0 for d in drops)
    flattens = drops[0] > drops[-1]
    return Outcome(falls == len(drops) and flattens,
                   f'Ours ({model}, pixel accuracy in %, ε = 8): ' + ', '.join(f'PGD-{k} {_f(g[k])}' for k in keys)
                   + f'; falls at {falls} of {len(drops)} steps (rule: all); first drop {drops[0]:.1f} vs last '
                     f'{drops[-1]:.1f} points ({"flattens" if flattens else "does not flatten"}).'), None


@check('x-square-vertical-better')
def _x_square(lk: Lookup):
    model = _x_res50(lk)
    v = lk.one(('xiang',), 'Square Attack (vertical stripes)', model, 'pixel accuracy', 8) if model else None
    h = lk.one(('xiang',), 'Square Attack (horizontal stripes)', model, 'pixel accuracy', 8) if model else None
    if v is None or h is None:
        return _not_testable('the xiang suite has no Square Attack records of ' + str(model)), None
    return Outcome(v.value < h.value, f'Ours ({model}, pixel accuracy in %, ε = 8): vertical {_f(v.value)} vs '
                                      f'horizontal {_f(h.value)}.'), None


# -- Poursaeed et al. 2018 -----------------------------------------------------------------

_P_GAP_T = 'GAP, universal, targeted (static target)'
_P_UAP = 'UAP-Seg (Metzen et al. 2017), static target'
_P_GAP_IMG = 'GAP, image-dependent, targeted (static target)'


def _p_pairs(lk: Lookup, first: Tuple[Sequence[str], str], second: Tuple[Sequence[str], str]):
    """``{ε: (a, b)}`` success rates of two attacks of our FCN on the same held-out dataset."""
    fcn = _ids_by_label(lk, 'FCN-8s')[0]
    out = {}
    for eps in (5.0, 10.0, 20.0):
        a = lk.one(first[0], first[1], fcn, 'success rate', eps) if fcn else None
        b = lk.one(second[0], second[1], fcn, 'success rate', eps) if fcn else None
        if a is not None and b is not None and a.row.dataset == b.row.dataset:
            out[eps] = (a.value, b.value)
    return out


@check('p-gap-beats-uap')
def _p_gap_uap(lk: Lookup):
    paper = {pv.epsilon: pv.value for pv in lk.pub.values if pv.attack == _P_GAP_T and pv.value is not None}
    paper_uap = {pv.epsilon: pv.value for pv in lk.pub.values if pv.attack == _P_UAP and pv.value is not None}
    common = sorted(set(paper) & set(paper_uap))
    k = sum(paper[e] > paper_uap[e] for e in common)
    paper_out = Outcome(_rule(k, len(common), 'majority'), _rule_text(k, len(common), 'majority'))
    ours = _p_pairs(lk, (('poursaeed2018',), _P_GAP_T), (('metzen2017', 'metzen2017_transfer'), _P_UAP))
    if not ours:
        return _not_testable('no GAP (poursaeed2018) and universal (metzen2017) static-target records of the '
                             'same model and held-out images'), paper_out
    k = sum(a > b for a, b in ours.values())
    return Outcome(_rule(k, len(ours), 'majority'),
                   'Ours (success rate in %, held-out images): ' + ', '.join(
                       f'ε={e:g}: GAP {_f(a)} vs universal {_f(b)}' for e, (a, b) in sorted(ours.items()))
                   + f'; {_rule_text(k, len(ours), "majority")}.'), paper_out


@check('p-image-dependent-higher')
def _p_image_dependent(lk: Lookup):
    ours = _p_pairs(lk, (('poursaeed2018',), _P_GAP_IMG), (('poursaeed2018',), _P_GAP_T))
    if not ours:
        return _not_testable('the poursaeed2018 suite has no targeted universal and image-dependent records'), None
    k = sum(a > b for a, b in ours.values())
    return Outcome(_rule(k, len(ours), 'all'),
                   'Ours (success rate in %, held-out images): ' + ', '.join(
                       f'ε={e:g}: image-dependent {_f(a)} vs universal {_f(b)}' for e, (a, b) in sorted(ours.items()))
                   + f'; {_rule_text(k, len(ours), "all")}.'), None


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

def _fmt_number(v: float, decimals: int) -> str:
    return f'{v:.{decimals}f}'


def _published_text(row: pd.Series, decimals: Optional[int]) -> str:
    if row['published status'] != OK:   # the reason's first clause; the whole of it is in the notes
        return str(row['published status']).split(';')[0]
    v = float(row['published'])
    text = _fmt_number(v, decimals) if decimals is not None else f'{v:g}'
    return RELATIONS.get(row['published relation'], '') + ('≈ ' if row['published approximate'] else '') + text


def _ours_text(row: pd.Series, decimals: int) -> str:
    if row['ours status'] != OK:
        return str(row['ours status'])
    text = _fmt_number(row['ours'], decimals)
    sd = row['ours sd over images']
    if isinstance(sd, float) and not math.isnan(sd):
        text += f' ± {_fmt_number(sd, decimals)}'
    return text


def display_frame(section: PaperSection, published: Optional[Published] = None) -> Tuple[pd.DataFrame, List[str]]:
    """The section's table as text cells for Markdown and LaTeX, and the caption lines for the
    columns whose value is the same in every row (moved out of the table). Published numbers keep
    the paper's decimals; a missing number shows why ("not run", "no such model in our zoo",
    "not in the text file", ...)."""
    t = section.table
    if 'value id' not in t.columns:   # a table of another layout (the networks) is shown as it is
        return t.fillna('').astype(str), []
    decimals = {v.id: v.decimals for v in published.values} if published is not None else {}
    shown = ['paper row', 'paper column', 'paper network', 'metric', 'unit', 'published', 'published in',
             'published dataset', 'ours', 'our model', 'our suite', 'our dataset']
    rows = []
    for _, r in t.iterrows():
        d = decimals.get(r['value id'])
        row = {c: str(r[c]) for c in shown if c not in ('published', 'ours')}
        row['published'] = _published_text(r, d)
        row['ours'] = _ours_text(r, d if d is not None else DECIMALS.get(r['unit'], 1))
        rows.append(row)
    out = pd.DataFrame(rows, columns=shown)
    if (out['paper network'] == out['paper row']).all():
        out = out.drop(columns=['paper network'])
    constant = []
    if len(out) > 1:
        for c in list(out.columns):
            if c in ('published', 'ours', 'paper row'):
                continue
            vals = set(out[c]) - {''}   # '' (a cell not run) agrees with any value
            if len(vals) <= 1:
                if vals:
                    constant.append(f'{c}: {vals.pop()}')
                out = out.drop(columns=[c])
    if 'unit' not in out.columns and len(set(t['unit'])) == 1:
        u = t['unit'].iloc[0]
        out = out.rename(columns={'published': f'published ({u})', 'ours': f'ours ({u})'})
    return out, constant


_MD_SPECIAL = re.compile(r'([\\`*\[\]|~$<>])')


def md_text(text) -> str:
    """``text`` as plain Markdown (table cells, list items): line breaks become spaces, characters
    that start code, emphasis, links, tables or HTML are backslash-escaped, and ``_`` is escaped
    except inside a word."""
    text = re.sub(r'[\r\n\t\v\f]+', ' ', str(text))
    text = text.replace('&', '&amp;')
    text = _MD_SPECIAL.sub(r'\\\1', text)
    return re.sub(r'(?<![^\W_])_|_(?![^\W_])', r'\\_', text)


def _md_table(df: pd.DataFrame) -> str:
    cols = [md_text(c) for c in df.columns]
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '|'.join('---' for _ in cols) + '|']
    for _, r in df.iterrows():
        lines.append('| ' + ' | '.join(md_text(v) for v in r.tolist()) + ' |')
    return '\n'.join(lines)


def to_markdown(report: PaperReport) -> str:
    """The report as Markdown: title, citation, and per section its caption, table (our number
    beside the published one), notes, agreement with the paper's findings and the command."""
    pub = load_published(report.key)
    parts = [f'# {md_text(report.title)}', '',
             f'Our numbers beside the published ones (`{report.key}`). Regenerate with '
             f'`.venv/bin/python tools/make_leaderboard.py --paper {report.key}`; do not edit.', '',
             '```bibtex', report.citation.strip(), '```', '']
    for s in report.sections:
        table, constant = display_frame(s, pub)
        parts += [f'## {md_text(s.heading)}', '', md_text(s.caption), '']
        if constant:
            parts += ['In every row: ' + md_text('; '.join(constant)) + '.', '']
        parts += [_md_table(table), '']
        if s.notes:
            parts += [f'- {md_text(n)}' for n in s.notes] + ['']
        if s.agreement:
            parts += ['Agreement with the paper:', ''] + [f'- {md_text(a)}' for a in s.agreement] + ['']
        parts += [f'Command: `{s.command}`', '']
    return '\n'.join(parts)


_LATEX_SPECIAL = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#', '_': r'\_',
                  '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}', '^': r'\textasciicircum{}'}
_LATEX_UNICODE = {'ε': r'\ensuremath{\varepsilon}', 'ω': r'\ensuremath{\omega}', 'μ': r'\ensuremath{\mu}',
                  'α': r'\ensuremath{\alpha}', '≥': r'\ensuremath{\geq}', '≤': r'\ensuremath{\leq}',
                  '×': r'\ensuremath{\times}', '±': r'\ensuremath{\pm}', '→': r'\ensuremath{\rightarrow}',
                  '≈': r'\ensuremath{\approx}', '∞': r'\ensuremath{\infty}', '⌈': r'\ensuremath{\lceil}',
                  '⌉': r'\ensuremath{\rceil}', '†': r'\dag{}', '–': '--', '—': '---', '’': "'",
                  '≠': r'\ensuremath{\neq}', '<': r'\textless{}', '>': r'\textgreater{}'}


def latex_text(text) -> str:
    """``text`` escaped for LaTeX running text (captions, notes); the Greek letters and symbols the
    reports use become math-mode commands."""
    out = ''.join(_LATEX_SPECIAL.get(ch, ch) for ch in re.sub(r'\s+', ' ', str(text)))
    return _latex_unicode(out)


def _latex_unicode(text: str) -> str:
    for ch, cmd in _LATEX_UNICODE.items():
        text = text.replace(ch, cmd)
    return text


def to_latex(report: PaperReport) -> str:
    """The report as a LaTeX fragment (``\\input`` it; needs ``booktabs`` and ``longtable``): per
    section a booktabs table written by pandas' ``DataFrame.to_latex`` (which escapes the cells),
    its notes, agreement lines and command."""
    pub = load_published(report.key)
    parts = [f'% {report.title}: our numbers beside the published ones.',
             f'% Generated by tools/make_leaderboard.py --paper {report.key}; do not edit.',
             '% Needs \\usepackage{booktabs} and \\usepackage{longtable}.',
             '% ' + report.citation.strip().replace('\n', '\n% '), '']
    for i, s in enumerate(report.sections):
        table, constant = display_frame(s, pub)
        caption = f'{s.heading}. {s.caption}' + (' In every row: ' + '; '.join(constant) + '.' if constant else '')
        label = f'tab:{report.key}-{i}'
        # text-heavy columns wrap (p{}), short ones stay on one line
        widths = [max([len(str(c))] + [len(str(v)) for v in table[c]]) for c in table.columns]
        column_format = ''.join('p{3.4cm}' if w > 28 else 'l' for w in widths)
        latex = table.to_latex(index=False, escape=True, longtable=len(table) > 25,
                               caption=latex_text(caption), label=label, column_format=column_format)
        parts += [f'\\subsection*{{{latex_text(s.heading)}}}', _latex_unicode(latex).rstrip(), '']
        if s.notes:
            parts += ['\\begin{itemize}'] + [f'  \\item {latex_text(n)}' for n in s.notes] + ['\\end{itemize}', '']
        if s.agreement:
            parts += ['\\paragraph{Agreement with the paper.}', '\\begin{itemize}']
            parts += [f'  \\item {latex_text(a)}' for a in s.agreement] + ['\\end{itemize}', '']
        parts += [f'\\noindent Command: \\texttt{{{latex_text(s.command)}}}', '']
    return '\n'.join(parts)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

@dataclass
class WrittenPaper:
    key: str
    markdown: str
    markdown_path: Path
    latex_path: Path
    report: PaperReport


def paper_keys(which: str) -> List[str]:
    """``'all'`` → every key of :data:`PAPER_KEYS`; a key → that key; anything else is refused."""
    if which == 'all':
        return list(PAPER_KEYS)
    if which not in PAPER_KEYS:
        raise ConfigError(f'--paper {which!r} is not a paper of the benchmark; expected one of '
                          f'{", ".join(PAPER_KEYS)} or all')
    return [which]


def make_paper_tables(results_dir: Union[str, Path], out_dir: Union[str, Path], which: str) -> List[WrittenPaper]:
    """Regenerate the tables of one paper (or ``'all'``) from the records under ``results_dir``
    into ``<out_dir>/papers/<key>.md`` and ``.tex``; returns what was written."""
    keys = paper_keys(which)
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise ResultsError(f'no result records under {results_dir}: the folder does not exist; expected '
                           'the folder of result records (e.g. results/) that tools/run_benchmark.py writes')
    from common.atomic import atomic_write_bytes
    from leaderboard.report import load_results
    df = load_results(results_dir)
    out = []
    folder = Path(out_dir) / 'papers'
    for report in paper_reports(df, keys):
        markdown = to_markdown(report)
        md_path, tex_path = folder / f'{report.key}.md', folder / f'{report.key}.tex'
        atomic_write_bytes(md_path, markdown.encode())
        atomic_write_bytes(tex_path, to_latex(report).encode())
        out.append(WrittenPaper(report.key, markdown, md_path, tex_path, report))
    return out

"""Loading: verified result records → one DataFrame row per cell.

A pure function of the records under a results directory: it never imports torch, attacks or model
code (only :mod:`benchmark.store`, :mod:`benchmark.integrity` and the numpy-only metric modules).
Every record is verified before it is used (:func:`benchmark.store.inspect_record`: metrics
recomputed from the stored confusion matrices, per-image files, names, paths) and checked against
the other cells of its model (:func:`benchmark.integrity.consistency_problems`); a record that
fails is refused – logged as a warning and listed with file, field and reason – and the rest is
loaded.

Besides the metrics, each row carries what the pages show about the cell: the attack's display
name (written by the runner into the record; older records fall back to :data:`ATTACK_LABELS`),
a readable dataset label, the model's architecture, backbone and parameter count (the record's
``provenance.model_info`` when the runner wrote one, else the zoo metafile entry whose checkpoint
sha256 the record names), the provenance of the number, the per-class IoU, and 95 % bootstrap
confidence intervals of the mIoU and the IoU ratio over images (:mod:`leaderboard.stats`, from
the per-image confusion matrices of the record's ``.npz``). Columns whose name starts with ``_``
hold arrays (per-image matrices, bootstrap samples) and never go into a CSV.
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.cells import CLEAN
from benchmark.integrity import consistency_problems, inspect_paths
from benchmark.store import Problem, ResultStore, hidden_class_of
from benchmark.targeted_metrics import per_image_hiding
from common.errors import ResultsError

from . import stats

logger = logging.getLogger(__name__)

#: Display names of the attacks of records written before the runner stored each attack's own
#: ``attack_display_name`` (a record's name wins); also the order attacks are listed in.
ATTACK_LABELS = {'fgsm': 'FGSM', 'fgsm_ll': 'FGSM II', 'ifgsm': 'Iterative FGSM',
                 'ifgsm_ll': 'Iterative FGSM II', 'pgd': 'PGD', 'mifgsm': 'MI-FGSM', 'segpgd': 'SegPGD',
                 'cospgd': 'CosPGD', 'square': 'Square Attack', 'targeted_ifgsm': 'Targeted I-FGSM',
                 'universal': 'Universal', 'gap': 'GAP', 'worst_case': 'Worst case'}
REFERENCE_EPSILON = 8.0
#: A model is "near chance level" when its clean mIoU is below this multiple of the mIoU of always
#: predicting the most frequent ground-truth class (see :func:`majority_class_miou`).
CHANCE_FACTOR = 2.0
#: Refused records logged one by one (a copied results folder would otherwise flood the log).
MAX_LOGGED_REFUSALS = 20
#: The zoo's metadata (architecture, backbone, parameters), matched to records by checkpoint sha256.
ZOO_METAFILE = Path(__file__).resolve().parent.parent / 'model_zoo' / 'metafile.yaml'
#: Columns of :func:`load_results` that hold arrays or lists, never written to a CSV.
ARRAY_COLUMNS = ('_per_image', '_label_accuracy', '_miou_samples', '_ratio_samples', '_success_samples',
                 'per_class_iou',
                 'class_names')


def natural_key(text) -> tuple:
    """Sort key that orders the numbers inside labels by value: ``num_steps=20`` before
    ``num_steps=100`` (string order puts 100 first)."""
    parts = re.split(r'(\d+(?:\.\d+)?)', str(text))
    return tuple(float(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def attack_label(name: str, display: Optional[str] = None) -> str:
    """An attack's display name: the one its records state, else :data:`ATTACK_LABELS`, else the
    attack's registry name."""
    return display or ATTACK_LABELS.get(name, name)


def _short(v) -> str:
    if isinstance(v, float):
        return f'{v:g}'
    if isinstance(v, (list, tuple)):
        return '×'.join(_short(x) for x in v)
    return str(v)


def variant_label(attack: str, spec: Optional[dict], omit=(), display: Optional[str] = None) -> str:
    """A table label for one attack configuration of a suite: the attack's name plus the options
    its suite entry sets (e.g. ``PGD (num_steps=100)``, ``Universal (hide class 11, tile_size=32×32)``),
    leaving out the keys in ``omit`` (options shared by every configuration of the attack)."""
    base = attack_label(attack, display)
    parts = _option_labels(spec, omit)
    return f'{base} ({", ".join(parts)})' if parts else base


def _option_labels(spec: Optional[dict], omit=()) -> List[str]:
    parts = []
    for k, v in sorted((spec or {}).items()):
        if k in ('type', 'epsilons') or k in omit:
            continue
        if k == 'target' and isinstance(v, dict):
            parts.append(f"hide class {v.get('hidden_class')}" if v.get('kind') == 'hide_class'
                         else f"static target {v.get('split')}[{v.get('index')}]")
        elif k == 'mask':
            parts.append({'hidden_class': 'masked', 'hidden_class_posthoc': 'masked after'}.get(v, f'mask={v}'))
        elif k == 'attacks' and isinstance(v, list):
            parts.append('+'.join(attack_label(str(m.get('type', '?')) if isinstance(m, dict) else str(m))
                                  for m in v))
        else:
            parts.append(f'{k}={_short(v)}')
    return parts


def _label_variants(df: pd.DataFrame) -> Dict[str, List[str]]:
    """Set ``df.variant`` (and ``df.attack_label``) from each cell's suite entry and the display
    name its records state, leaving out the options every entry of the same attack in the suite
    shares; returns those shared options per suite, for a note."""
    common_notes: Dict[str, List[str]] = {}
    labels = pd.Series(CLEAN, index=df.index, dtype=object)
    names = pd.Series(CLEAN, index=df.index, dtype=object)
    for (suite, attack), g in df[df.attack != CLEAN].groupby(['suite', 'attack'], sort=True):
        stated = sorted(set(g.attack_display_name.dropna()))
        display = stated[0] if stated else None
        names[g.index] = attack_label(attack, display)
        specs = {s: json.loads(s) for s in g.spec.unique()}
        dicts = [d for d in specs.values() if d]
        common = set()
        if dicts:
            keys = set.intersection(*(set(d) for d in dicts)) - {'type', 'epsilons'}
            common = {k for k in keys if len({json.dumps(d[k], sort_keys=True) for d in dicts}) == 1}
            shared = _option_labels({k: dicts[0][k] for k in common})
            if shared:
                common_notes.setdefault(suite, []).append(f'{attack_label(attack, display)}: {", ".join(shared)}')
        for spec_json, spec in specs.items():
            labels[g.index[g.spec == spec_json]] = variant_label(attack, spec, omit=common, display=display)
    df['variant'] = labels
    df['attack_label'] = names
    return common_notes


def check_results(results_dir: Union[str, Path]) -> Tuple[list, List[Problem]]:
    """The records under ``results_dir`` that can be trusted, and the problems of the others.

    A record is refused when it fails the per-record checks of
    :func:`benchmark.store.inspect_record` (relative to ``results_dir``: a copied or moved folder
    does not match its records' keys) or disagrees with its model's other cells
    (:func:`benchmark.integrity.consistency_problems`: duplicate cell, other image list, other
    ground truth or image sizes). Returns ``(checked records, problems)``.
    """
    results_dir = Path(results_dir)
    if not results_dir.exists():
        return [], []
    if not results_dir.is_dir():
        raise ResultsError(f'the results path {results_dir} is a file; expected the folder of result '
                           'records (e.g. results/)')
    checked, problems = inspect_paths([results_dir], root=results_dir)
    problems += consistency_problems(checked)
    refused = {p.file for p in problems}
    return [c for c in checked if str(c.path) not in refused], problems


def majority_class_miou(conf_gt) -> float:
    """mIoU of the constant prediction "the most frequent ground-truth class" (a chance level).

    With ``n_k`` pixels of the most frequent class ``k`` out of ``N`` labelled pixels and ``P``
    classes present in the ground truth, predicting ``k`` everywhere gives IoU ``n_k / N`` for
    ``k`` and 0 for the other present classes (absent classes have an empty union and are left
    out of the mean, as in :func:`benchmark.metrics.mean_iou`): ``(n_k / N) / P``. It needs only the
    row sums of any of the model's ``vs_ground_truth`` matrices.
    """
    area = np.asarray(conf_gt, dtype=np.int64).sum(axis=1)
    total, present = area.sum(), int((area > 0).sum())
    return float(area.max() / total / present) if total > 0 else float('nan')


def load_zoo_metadata(path: Optional[Union[str, Path]] = ZOO_METAFILE) -> Dict[str, dict]:
    """``{checkpoint sha256: {name, architecture, backbone, parameters}}`` of the zoo metafile
    (a YAML data file; no model code is imported). Empty when the file is missing or unreadable."""
    if path is None or not Path(path).is_file():
        return {}
    import yaml
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        logger.warning('zoo metadata %s cannot be read (%s); architecture, backbone and parameters '
                       'come from the records only', path, e)
        return {}
    out = {}
    for item in data.get('models') or []:
        if isinstance(item, dict) and isinstance(item.get('sha256'), str):
            out[item['sha256'].lower()] = {k: item.get(k) for k in ('name', 'architecture', 'backbone',
                                                                     'parameters')}
    return out


def model_info(provenance: dict, zoo: Dict[str, dict]) -> Dict[str, object]:
    """Architecture, backbone and parameter count of a record's model: the record's
    ``provenance.model_info`` when present, else the zoo entry of its checkpoint sha256, else
    unknown (empty text, NaN parameters)."""
    info = provenance.get('model_info') if isinstance(provenance.get('model_info'), dict) else {}
    sha = provenance.get('checkpoint_sha256')
    entry = zoo.get(sha.lower(), {}) if isinstance(sha, str) else {}
    params = info.get('parameters', entry.get('parameters'))
    return {'architecture': str(info.get('architecture') or entry.get('architecture') or ''),
            'backbone': str(info.get('backbone') or entry.get('backbone') or ''),
            'parameters': float(params) if isinstance(params, (int, float)) and not isinstance(params, bool)
            else np.nan,
            'model_info_source': 'record' if info else 'zoo metafile' if entry else ''}


def family_of(model: str, architecture: str = '') -> str:
    """The family a model's lines share a colour with in the static figures: the first word of
    its name without an FCN-style stride suffix (``fcn8s_vgg16-w8_synthcity`` → ``fcn``,
    ``deeplabv2-aspp-msc_r18`` → ``deeplabv2``), scale ids (``X.s0.5``) with their model."""
    base = re.split(r'[_\-.+]', model, maxsplit=1)[0].lower()
    return re.sub(r'\d+s$', '', base) or base or model


def dataset_labels(df: pd.DataFrame) -> Dict[str, str]:
    """A readable label per dataset key: ``synthetic_cityscapes, val split, 8 images`` instead of
    ``synthetic_cityscapes-val-53911214``; the key's hash is added only where two datasets would
    otherwise share a label."""
    labels = {}
    for key, g in df.groupby('dataset', sort=True):
        name, split, n = g.dataset_name.iloc[0], g.dataset_split.iloc[0], int(g.num_images.max())
        labels[key] = f'{name}, {split} split, {n} image{"s" if n != 1 else ""}' if name else key
    counts = pd.Series(list(labels.values())).value_counts()
    return {k: (f'{v} ({k.rsplit("-", 1)[-1]})' if counts[v] > 1 else v) for k, v in labels.items()}


def _label_accuracy(arrays: Optional[Dict[str, np.ndarray]], label_source: str, clean: bool) -> Optional[np.ndarray]:
    """``(n,)`` pixel accuracy of each image against the labels the attacks were given (the clean
    prediction or the ground truth): the criterion of the per-image worst case (SEA, Croce et al.
    2024). 1 per image for the clean cell against its own prediction; 1 where nothing is labelled."""
    if arrays is None:
        return None
    if label_source == 'ground_truth':
        conf = arrays.get('vs_ground_truth')
    else:
        conf = arrays.get('vs_clean')
        if conf is None and clean:
            n = len(arrays['vs_ground_truth'])
            return np.ones(n)
    if conf is None:
        return None
    total = conf.sum(axis=(1, 2))
    right = np.trace(conf, axis1=1, axis2=2)
    return np.where(total > 0, right / np.maximum(total, 1), 1.0)


def load_results(results_dir: Union[str, Path], zoo_metafile: Optional[Union[str, Path]] = ZOO_METAFILE
                 ) -> pd.DataFrame:
    """One row per trusted stored cell, metrics recomputed from the confusion matrices.

    Columns (fractions, not percent): suite, dataset, dataset_label, model, attack, attack_label,
    variant, epsilon, source_model, scale, label_source, params, num_images, miou, miou_ci_low,
    miou_ci_high, pixel_accuracy, clean_miou, iou_ratio, iou_ratio_ci_low, iou_ratio_ci_high,
    targeted_success_rate, agreement_with_clean, gradient_passes, generation_gradient_passes,
    wall_time_s, commit, config_hash, checkpoint_sha256, seed, architecture, backbone, parameters,
    family, mean_top_probability, input_gradient_* (when the runner recorded them), path,
    chance_miou (the :func:`majority_class_miou` of the cell's ground truth), per_class_iou and
    class_names (lists), and the array columns of :data:`ARRAY_COLUMNS`.

    Records that cannot be trusted (:func:`check_results`) are left out, logged as warnings, and
    listed in ``df.attrs['refused']`` (:class:`benchmark.store.Problem` s).
    """
    checked, refused = check_results(results_dir)
    for problem in refused[:MAX_LOGGED_REFUSALS]:
        logger.warning('refused record: %s', problem)
    if len(refused) > MAX_LOGGED_REFUSALS:
        logger.warning('... and %d more refused record problem(s), all listed in the rendered README',
                       len(refused) - MAX_LOGGED_REFUSALS)
    zoo = load_zoo_metadata(zoo_metafile)
    store = ResultStore(results_dir)
    rows = []
    for item in checked:
        path, rec, key = item.path, item.record, item.key
        conf = rec['confusion']
        gt = np.asarray(conf['vs_ground_truth'], dtype=np.int64)
        arrays = store.read_per_image(path, rec) if rec.get('per_image') else None
        hiding = {}
        hidden_class = hidden_class_of(key.params)
        if hidden_class is not None and item.per_image_clean is not None:
            for name, values in zip(('hidden', 'preserved'),
                                    per_image_hiding(item.per_image_clean, hidden_class)):
                values = values[~np.isnan(values)]
                hiding[f'{name}_image_mean'] = float(values.mean()) if len(values) else np.nan
                hiding[f'{name}_image_sd'] = float(values.std()) if len(values) else np.nan
        prov, st = rec['provenance'], rec['attack_stats']
        confidence = st.get('prediction_confidence') or {}
        gradient = st.get('input_gradient') if isinstance(st.get('input_gradient'), dict) else None
        per_image_gt = None if arrays is None else np.asarray(arrays['vs_ground_truth'], dtype=np.int64)
        rows.append({
            **hiding,
            'suite': key.suite, 'dataset': key.dataset, 'model': key.model, 'attack': key.attack,
            'epsilon': key.epsilon, 'source_model': key.source_model, 'scale': key.scale,
            'label_source': key.label_source, 'params': str(key.params), 'cell_id': key.cell_id,
            'num_images': rec['num_images'], 'miou': metrics.mean_iou(gt),
            'pixel_accuracy': metrics.pixel_accuracy(gt),
            'agreement_with_clean': (metrics.pixel_accuracy(np.asarray(conf['vs_clean']))
                                     if conf['vs_clean'] is not None else np.nan),
            'targeted_success_rate': (metrics.targeted_success_rate(conf['vs_target'])
                                      if conf['vs_target'] is not None else np.nan),
            'has_target_map': 'target' in key.params,
            'spec': json.dumps(prov.get('attack_spec') or {}, sort_keys=True),
            'attack_display_name': prov.get('attack_display_name'),
            'fooling_rate': rec['metrics'].get('fooling_rate', np.nan),
            'class_pixels_hidden': rec['metrics'].get('class_pixels_hidden', np.nan),
            'background_preserved': rec['metrics'].get('background_preserved', np.nan),
            'queries': (st.get('per_image_info') or {}).get('queries', {}).get('mean', np.nan),
            'gradient_passes': st['gradient_passes_per_image'],
            'generation_gradient_passes': (st.get('generation') or {}).get('gradient_passes_per_image', np.nan),
            'wall_time_s': prov['wall_time_s'],
            'commit': prov.get('git_sha') or '', 'git_dirty': prov.get('git_dirty'),
            'config_hash': prov.get('config_hash') or '',
            'checkpoint_sha256': (prov.get('checkpoint_sha256') if isinstance(prov.get('checkpoint_sha256'), str)
                                  else ', '.join(map(str, prov.get('checkpoint_sha256') or []))),
            'seed': prov.get('seed'), 'created': prov.get('created', ''),
            'dataset_name': str(rec['dataset'].get('name') or ''),
            'dataset_split': str(rec['dataset'].get('split') or ''),
            **model_info(prov, zoo),
            'mean_top_probability': confidence.get('mean_top_probability', np.nan),
            'input_gradient_zero_fraction_mean': (gradient or {}).get('zero_fraction_mean', np.nan),
            'input_gradient_zero_fraction_max': (gradient or {}).get('zero_fraction_max', np.nan),
            'input_gradient_all_finite': None if gradient is None else bool(gradient.get('all_finite', True)),
            'path': str(path),
            # the qualitative panel's images (a few fixed images), relative to the results root
            'panel': (prov.get('panel') or {}).get('path'),
            'chance_miou': majority_class_miou(gt),
            'random_weights': bool(prov.get('random_weights', False)),
            'per_class_iou': list(rec['metrics']['per_class_iou']),
            'class_names': list(rec['class_names']),
            '_per_image': per_image_gt,
            '_label_accuracy': _label_accuracy(arrays, key.label_source, key.is_clean),
            '_miou_samples': None if per_image_gt is None else stats.bootstrap_miou(per_image_gt),
            '_success_samples': (stats.bootstrap_pixel_accuracy(arrays['vs_target'])
                                 if arrays is not None and arrays.get('vs_target') is not None else None),
            '_clean_id': key.clean_key().cell_id,
        })
    df = pd.DataFrame(rows)
    df.attrs['refused'] = refused
    if df.empty:
        return df
    df.attrs['common_options'] = _label_variants(df)
    labels = dataset_labels(df)
    df['dataset_label'] = df.dataset.map(labels)
    df['family'] = [family_of(m) for m in df.model]
    clean = df[df.attack == CLEAN].drop_duplicates('cell_id').set_index('cell_id')
    df['clean_miou'] = df['_clean_id'].map(clean['miou'])
    df['iou_ratio'] = metrics.iou_ratios(df['miou'], df['clean_miou'])
    clean_samples = df['_clean_id'].map(clean['_miou_samples'])
    df['_ratio_samples'] = [stats.ratio_samples(a, c if isinstance(c, np.ndarray) else None)
                            for a, c in zip(df['_miou_samples'], clean_samples)]
    for name, samples in (('miou', '_miou_samples'), ('iou_ratio', '_ratio_samples')):
        bounds = [stats.interval(s) for s in df[samples]]
        df[f'{name}_ci_low'] = [b[0] for b in bounds]
        df[f'{name}_ci_high'] = [b[1] for b in bounds]
    for col in ('fooling_rate', 'class_pixels_hidden', 'background_preserved', 'queries',
                'generation_gradient_passes', 'mean_top_probability', 'input_gradient_zero_fraction_mean',
                'input_gradient_zero_fraction_max', 'parameters'):
        df[col] = pd.to_numeric(df[col], errors='coerce')
    out = df.drop(columns=['_clean_id']).sort_values(['suite', 'model', 'attack', 'epsilon'],
                                                    ignore_index=True)
    out.attrs.update(df.attrs)
    return out


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the array and internal columns (what a CSV holds: fractions, one cell per row)."""
    drop = [c for c in df.columns if c.startswith('_') or c in ARRAY_COLUMNS
            or c in ('path', 'panel', 'chance_miou', 'random_weights', 'attack_display_name')]
    return df.drop(columns=drop)


def white_box(df: pd.DataFrame) -> pd.DataFrame:
    """The white-box and clean cells of ``df`` (``source_model`` None: the source is the target)."""
    if df.empty or 'source_model' not in df:
        return df
    return df[df.source_model.isna()]


def summary_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The cells the summary table ranks: white-box ones, of the models with a white-box attack
    or without any transfer cell (a suite without transfer keeps every model, even one with only
    its clean cell, which is then flagged incomplete)."""
    wb = white_box(df)
    if len(wb) == len(df):
        return df
    attacked = set(wb[wb.attack != CLEAN].model)
    transferred = set(df[df.source_model.notna()].model)
    return wb[wb.model.isin(attacked) | ~wb.model.isin(transferred)]


def attack_order(df: pd.DataFrame) -> List[str]:
    """Attacks of ``df``: clean first, then in the order of :data:`ATTACK_LABELS`, then by name."""
    known = [a for a in ATTACK_LABELS if a in set(df.attack)]
    return [CLEAN] * (CLEAN in set(df.attack)) + known + sorted(set(df.attack) - set(known) - {CLEAN})


def variant_order(df: pd.DataFrame) -> List[str]:
    """Attack variants (not clean) in the order of :func:`attack_order`, then by label with the
    numbers in it compared as numbers (:func:`natural_key`)."""
    pairs = df.loc[df.attack != CLEAN, ['attack', 'variant']].drop_duplicates()
    by_attack: Dict[str, List[str]] = {}
    for attack, variant in zip(pairs.attack, pairs.variant):
        by_attack.setdefault(attack, []).append(variant)
    out = []
    for attack in attack_order(df):
        out += sorted(by_attack.get(attack, []), key=natural_key)
    return out


def fmt_pct(v, pct=True) -> str:
    """A fraction as a percentage with one decimal (``–`` when missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '–'
    return f'{100 * v:.1f}' if pct else f'{v:g}'

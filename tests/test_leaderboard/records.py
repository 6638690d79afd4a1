"""Hand-made result records with per-image confusion matrices, for the leaderboard tests.

Two classes; every image has 30 ground-truth pixels of each class. ``image(c)`` is the matrix of
an image whose prediction gets ``c`` pixels of each class right (the others swapped): IoU per
class ``c / (60 - c)``, so every mIoU of a cell is known by hand.
"""
from typing import Optional, Sequence

import numpy as np

from benchmark.cells import CellKey
from benchmark.store import ResultStore, make_record

PROV = {'packages': {}, 'git_sha': 'c0ffee' * 6 + 'beef', 'git_dirty': False, 'seed': 0,
        'config_hash': 'f' * 64, 'wall_time_s': 1.5, 'created': '2026-01-02T00:00:00+00:00',
        'device': 'cpu', 'checkpoint_sha256': 'e' * 64}
DATASET = {'name': 'toy_city', 'split': 'val', 'image_ids_sha256': 'a' * 64}
PIXELS = 30


def image(c: int) -> np.ndarray:
    return np.array([[c, PIXELS - c], [PIXELS - c, c]], dtype=np.int64)


def images(*cs: int) -> np.ndarray:
    return np.stack([image(c) for c in cs])


def miou(c_total: int, n: int) -> float:
    """mIoU of the sum of ``n`` images with ``c_total`` right pixels per class in all."""
    return c_total / (2 * PIXELS * n - c_total)


def put(store: ResultStore, model: str, attack: str, eps: float, per_image: np.ndarray, *, suite: str = 's',
        source: Optional[str] = None, spec: Optional[dict] = None, params: Optional[dict] = None,
        vs_target: Optional[np.ndarray] = None, stats: Optional[dict] = None,
        provenance: Optional[dict] = None, class_names: Sequence[str] = ('road', 'car'),
        label_source: str = 'prediction', dataset: Optional[dict] = None, write_per_image: bool = True):
    """Store one cell as the runner would: record + per-image ``.npz``. The clean prediction is
    the ground truth (clean cells are all right), so ``vs_clean`` equals ``vs_ground_truth``."""
    key = CellKey(suite, 'toy-val-0001', model, attack, params or {}, eps, source_model=source,
                  label_source=label_source)
    prov = dict(PROV, **(provenance or {}))
    if attack != 'clean':
        prov['attack_spec'] = spec or {'type': attack}
    st = {'gradient_passes_per_image': 0 if attack == 'clean' else 1, 'forward_images': 1,
          'gradient_images': 1, **(stats or {})}
    clean = None if attack == 'clean' else per_image
    record = make_record(key, dataset=dataset or DATASET, class_names=list(class_names),
                         conf_gt=per_image.sum(0), conf_clean=None if clean is None else clean.sum(0),
                         conf_target=None if vs_target is None else vs_target.sum(0),
                         num_images=len(per_image), attack_stats=st, provenance=prov)
    arrays = {'vs_ground_truth': per_image, 'vs_clean': clean, 'vs_target': vs_target}
    return store.write(record, per_image=arrays if write_per_image else None)


def build_results(root, third: bool = False):
    """Suite ``s``: models alpha (stronger clean, flagged: its transfer source beats the white-box
    attack) and beta; FGSM at ε 4 and 8, PGD with 20 and 100 steps at 8, a transfer cell. Suite
    ``t``: one model, one cell. ``third`` adds gamma_psp (a PSPNet, the weakest) to suite ``s``."""
    store = ResultStore(root)
    clean = images(30, 30, 29, 30)
    for model, weak, strong in (('alpha', 20, 10), ('beta', 15, 6)):
        put(store, model, 'clean', 0, clean, provenance={'model_info': {
            'architecture': 'FCN', 'backbone': 'ResNet-18', 'parameters': 1234567}})
        put(store, model, 'fgsm', 4, images(*[weak] * 4))
        put(store, model, 'fgsm', 8, images(*[strong] * 4))
        for steps, c in ((100, strong - 4), (20, strong - 2)):
            put(store, model, 'pgd', 8, images(*[c] * 4), spec={'type': 'pgd', 'num_steps': steps},
                params={'num_steps': steps})
    if third:
        put(store, 'gamma_psp', 'clean', 0, clean, provenance={'model_info': {
            'architecture': 'PSPNet', 'backbone': 'ResNet-18', 'parameters': 800000}})
        put(store, 'gamma_psp', 'fgsm', 4, images(*[8] * 4))
        put(store, 'gamma_psp', 'fgsm', 8, images(*[3] * 4))
        for steps in (100, 20):
            put(store, 'gamma_psp', 'pgd', 8, images(*[1] * 4), spec={'type': 'pgd', 'num_steps': steps},
                params={'num_steps': steps})
    put(store, 'alpha', 'fgsm', 8, images(*[2] * 4), source='beta')
    put(store, 'solo', 'clean', 0, clean, suite='t')
    put(store, 'solo', 'fgsm', 8, images(*[12] * 4), suite='t')
    return store

"""Qualitative panels (Fischer et al. 2017, https://arxiv.org/abs/1703.01101, Fig. 1): what an
attack did to a few fixed images.

The runner keeps, for each attack entry at the ε of its grid nearest 8, the first images of the
evaluation split (``results/<suite>/<model>/panels/<cell>.npz``: image, exact perturbation, ground
truth, clean and adversarial predictions, target map; the record names the file and its sha256).
:func:`render_panel` draws one row per image: image, adversarial image, perturbation × 8 (grey
= 0), clean prediction, adversarial prediction, target (or ground truth), and the pixels whose
prediction the attack changed, label maps in the dataset's palette (Cityscapes or Pascal VOC).
Torch-free, like the rest of the report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

IGNORE = 255

#: Cityscapes train-id colours (cityscapesScripts' labels.py), ids 0-18
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)],
    dtype=np.uint8)


def voc_palette(n: int = 256) -> np.ndarray:
    """The Pascal VOC colour map (the bit-interleaving of the VOC development kit's ``labelcolormap``)."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def palette_for(class_names: Sequence[str]) -> np.ndarray:
    """Cityscapes colours for the 19 Cityscapes classes, VOC's for anything else."""
    if len(class_names) == 19 and class_names[0] == 'road':
        return CITYSCAPES_PALETTE
    return voc_palette(max(256, len(class_names)))[:max(len(class_names), 1)]


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W)`` class ids → ``(H, W, 3)`` uint8 colours; 255 (ignore) and unknown ids black."""
    labels = np.asarray(labels).astype(np.int64)
    out = np.zeros(labels.shape + (3,), dtype=np.uint8)
    known = (labels >= 0) & (labels < len(palette))
    out[known] = palette[labels[known]]
    return out


def load_panel(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def render_panel(path: Union[str, Path], out: Union[str, Path], class_names: Sequence[str],
                 title: str = '', formats: Sequence[str] = ('png',)) -> List[Path]:
    """Draw the panel of one cell (one row per stored image) and save it; returns the files."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    arrays = load_panel(path)
    palette = palette_for(class_names)
    images = arrays['image'].astype(np.float32)
    delta = arrays['delta'].astype(np.float32)
    adv = np.clip(images + delta, 0, 255)
    target = arrays.get('target')
    columns = ['image', 'adversarial image', 'perturbation × 8', 'clean prediction',
               'adversarial prediction', 'target' if target is not None else 'ground truth',
               'changed pixels']
    n = len(images)
    fig, axes = plt.subplots(n, len(columns), figsize=(2.2 * len(columns), 1.3 * n + 0.6), squeeze=False)
    for i in range(n):
        changed = arrays['clean_pred'][i] != arrays['adv_pred'][i]
        shown = [images[i].transpose(1, 2, 0) / 255.0, adv[i].transpose(1, 2, 0) / 255.0,
                 np.clip(128 + 8 * delta[i], 0, 255).transpose(1, 2, 0) / 255.0,
                 colorize(arrays['clean_pred'][i], palette), colorize(arrays['adv_pred'][i], palette),
                 colorize(target[i] if target is not None else arrays['ground_truth'][i], palette),
                 np.where(changed[..., None], np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 0.0]))]
        for j, (ax, img) in enumerate(zip(axes[i], shown)):
            ax.imshow(img, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
        name = Path(str(arrays['image_id'][i])).stem if 'image_id' in arrays else f'image {i}'
        axes[i][0].set_ylabel(name if len(name) <= 22 else name[:10] + '…' + name[-10:], fontsize=6)
        axes[i][-1].set_xlabel(f'{100 * changed.mean():.1f} % changed', fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target_path = out.with_suffix('.' + fmt)
        # photographs with noise-like perturbations: JPEG is a fifth of PNG's size at this quality
        extra = {'pil_kwargs': {'quality': 85}} if fmt in ('jpg', 'jpeg') else {}
        fig.savefig(target_path, dpi=72, **extra)
        written.append(target_path)
    plt.close(fig)
    return written


def panel_files(records) -> Dict[str, Path]:
    """``{cell_id: panel file}`` of records (``(path, record)`` pairs) that name one that exists."""
    out: Dict[str, Path] = {}
    for path, rec in records:
        panel: Optional[dict] = (rec.get('provenance') or {}).get('panel')
        if panel:
            file = Path(path).parents[2] / panel['path']
            if file.is_file():
                out[rec['cell_id']] = file
    return out

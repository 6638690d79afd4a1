"""Qualitative panels: palettes and the rendered figure, from a panel file made by hand."""
import numpy as np

from leaderboard.panels import CITYSCAPES_PALETTE, colorize, palette_for, render_panel, voc_palette


def test_palettes():
    voc = voc_palette()
    # the VOC development kit's colours: background, aeroplane, bicycle, person (15)
    assert tuple(voc[0]) == (0, 0, 0) and tuple(voc[1]) == (128, 0, 0) and tuple(voc[2]) == (0, 128, 0)
    assert tuple(voc[15]) == (192, 128, 128)
    assert len(CITYSCAPES_PALETTE) == 19 and tuple(CITYSCAPES_PALETTE[0]) == (128, 64, 128)
    names = ['road'] + [f'c{i}' for i in range(18)]
    assert palette_for(names) is CITYSCAPES_PALETTE
    assert len(palette_for(['background'] + [f'c{i}' for i in range(20)])) == 21
    labels = np.array([[0, 1], [255, 40]])
    out = colorize(labels, CITYSCAPES_PALETTE)
    assert tuple(out[0, 0]) == (128, 64, 128) and tuple(out[1, 0]) == (0, 0, 0) == tuple(out[1, 1])


def test_render_panel(tmp_path):
    rng = np.random.default_rng(0)
    n, h, w = 2, 16, 24
    clean = rng.integers(0, 19, (n, h, w)).astype(np.uint8)
    adv = clean.copy()
    adv[:, :4] = 11
    np.savez_compressed(tmp_path / 'p.npz', image=rng.integers(0, 256, (n, 3, h, w)).astype(np.uint8),
                        delta=rng.integers(-8, 9, (n, 3, h, w)).astype(np.int8), ground_truth=clean,
                        clean_pred=clean, adv_pred=adv, image_id=np.array(['a.png', 'b.png']))
    files = render_panel(tmp_path / 'p.npz', tmp_path / 'out' / 'panel', ['road'] + ['x'] * 18,
                         title='<FGSM> ε = 8', formats=('png', 'svg'))
    assert [f.suffix for f in files] == ['.png', '.svg'] and all(f.stat().st_size > 1000 for f in files)
    assert b'&lt;FGSM&gt;' in files[1].read_bytes()      # text in the SVG is escaped

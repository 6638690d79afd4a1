"""Leaderboard of transfer suites: source → target matrices, heatmaps, Arnab et al.'s scale table.

Hand-made records with two classes of 50 pixels each: ``c`` right pixels per class give
mIoU ``c / (100 - c)`` and pixel accuracy ``c / 50``, so every table value is known by hand.
"""
import re

import numpy as np
import pytest

from benchmark.cells import CellKey
from benchmark.store import ResultStore, make_record
from leaderboard.report import (load_results, make_leaderboard, order_ids, scale_table, summary_table,
                                transfer_cells, transfer_matrix)

PROV = {'packages': {}, 'git_sha': None, 'seed': 0, 'config_hash': 'x', 'wall_time_s': 0.0,
        'created': '2026-01-01T00:00:00+00:00', 'device': 'cpu'}
WHITE_BOX_STATS = {'gradient_passes_per_image': 1, 'forward_images': 2, 'gradient_images': 1}
DATASET = {'name': 'd', 'split': 'val', 'image_ids_sha256': 'a' * 64}


def miou(c):
    return c / (100 - c)


def put(store, target, attack, eps, correct, source=None, scale=1.0, suite='t'):
    """One cell of ``target`` (white-box when ``source`` is None), as the runner writes it."""
    conf = np.array([[correct, 50 - correct], [50 - correct, correct]])
    key = CellKey(suite, 'd', target, attack, {}, eps, source_model=source, scale=scale)
    prov = dict(PROV, attack_spec={'type': attack}) if attack != 'clean' else dict(PROV)
    stats = dict(WHITE_BOX_STATS)
    if source is not None:
        stats = {'gradient_passes_per_image': 0, 'forward_images': 1, 'gradient_images': 0,
                 'generation': {'source': source, 'gradient_passes_per_image': 1}}
        prov['source'] = {'id': source, 'spec': source, 'checkpoint_sha256': None}
    store.write(make_record(key, dataset=DATASET, class_names=['x', 'y'], conf_gt=conf, conf_clean=None,
                            conf_target=None, num_images=1, attack_stats=stats, provenance=prov))


#: correct pixels per class: clean, and (target, source) -> FGSM ε=8
CLEAN = {'A': 50, 'B': 45}
FGSM = {('A', 'A'): 20, ('A', 'B'): 40, ('B', 'B'): 10, ('B', 'A'): 30}


@pytest.fixture
def transfer_results(tmp_path):
    store = ResultStore(tmp_path / 'results')
    for model, c in CLEAN.items():
        put(store, model, 'clean', 0, c)
    for (target, source), c in FGSM.items():
        put(store, target, 'fgsm', 8, c, source=None if source == target else source)
    return tmp_path / 'results'


def expected_ratio(target, source):
    return miou(FGSM[target, source]) / miou(CLEAN[target])


def test_transfer_matrix_values(transfer_results):
    df = load_results(transfer_results)
    for value, f in (('iou_ratio', expected_ratio),
                     ('miou', lambda t, s: miou(FGSM[t, s])),
                     ('pixel_accuracy', lambda t, s: FGSM[t, s] / 50)):
        m = transfer_matrix(df, 'FGSM', 8, value)
        assert list(m.index) == ['A', 'B'] and list(m.columns) == ['A', 'B']
        for t in 'AB':
            for s in 'AB':
                assert m.loc[t, s] == pytest.approx(f(t, s)), (value, t, s)
    cells = transfer_cells(df, 'FGSM', 8)
    assert sorted(zip(cells.target, cells.source, cells.white_box)) == [
        ('A', 'A', True), ('A', 'B', False), ('B', 'A', False), ('B', 'B', True)]


def test_transfer_cells_stay_out_of_the_ranking(transfer_results):
    df = load_results(transfer_results)
    table = summary_table(df)
    # robustness from the white-box cells only: A 20 -> 1/4 of clean 1, B 10/90 over 45/55
    assert list(table.model) == ['A', 'B'] and list(table['rank']) == [1, 2]
    assert table.set_index('model').loc['A', 'FGSM ε=8'] == pytest.approx(expected_ratio('A', 'A'))
    assert table.set_index('model').loc['B', 'mean IoU ratio'] == pytest.approx(expected_ratio('B', 'B'))
    assert (table['flags'] == '').all()                    # the transfer cells do not count as extra cells


def test_target_with_transfer_cells_only_is_not_ranked(transfer_results):
    store = ResultStore(transfer_results)
    put(store, 'C', 'clean', 0, 40)
    put(store, 'C', 'fgsm', 8, 39, source='A')             # nearly unharmed: would rank first
    df = load_results(transfer_results)
    assert list(summary_table(df).model) == ['A', 'B']
    m = transfer_matrix(df, 'FGSM', 8)
    assert list(m.index) == ['A', 'B', 'C'] and list(m.columns) == ['A', 'B']
    assert m.loc['C', 'A'] == pytest.approx(miou(39) / miou(40)) and np.isnan(m.loc['C', 'B'])


def _table_after(readme, heading):
    lines = readme[readme.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('|'))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith('|'))
    return [[c.strip() for c in line.strip('|').split(' | ')] for line in lines[start:end]]


def test_rendered_matrices_heatmap_and_csv(transfer_results, tmp_path):
    out = tmp_path / 'out'
    written = make_leaderboard(transfer_results, out)
    readme = written['readme'].read_text()
    rows = _table_after(readme, 'IoU ratio (%):')
    assert rows[0] == ['target \\\\ source', 'A', 'B']
    # diagonal marked, the (only) transfer source of each row in bold
    assert rows[2] == ['A', f'{100 * expected_ratio("A", "A"):.1f}†', f'**{100 * expected_ratio("A", "B"):.1f}**']
    assert rows[3] == ['B', f'**{100 * expected_ratio("B", "A"):.1f}**', f'{100 * expected_ratio("B", "B"):.1f}†']
    acc = _table_after(readme, 'pixel accuracy (%):')
    assert acc[2] == ['A', '40.0†', '**80.0**'] and acc[3] == ['B', '**60.0**', '20.0†']
    assert '† white-box' in readme and '**bold**: the strongest transfer source' in readme
    # the ranking above the matrices is the white-box one
    assert '| 1 | A |' in readme and '| 2 | B |' in readme
    for suffix in ('png', 'svg'):
        path = out / f't_transfer_fgsm_eps8.{suffix}'
        assert path.stat().st_size > 1000 and path in written['figures']
    assert (out / 't_transfer_fgsm_eps8.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert b'<svg' in (out / 't_transfer_fgsm_eps8.svg').read_bytes()[:2000]
    import pandas as pd
    cells = pd.read_csv(out / 't_transfer_fgsm_eps8.csv')
    assert list(zip(cells.target, cells.source)) == [('A', 'A'), ('A', 'B'), ('B', 'A'), ('B', 'B')]
    np.testing.assert_allclose(cells.iou_ratio, [expected_ratio(t, s) for t, s in zip(cells.target, cells.source)])
    every = pd.read_csv(out / 't.csv')
    assert len(every) == 6 and list(every.columns).index('source') == list(every.columns).index('source_model') + 1
    fgsm = every[every.attack == 'fgsm']
    assert sorted(zip(fgsm.model, fgsm.source)) == [('A', 'A'), ('A', 'B'), ('B', 'A'), ('B', 'B')]


def test_strongest_transfer_source_is_bold_and_rendering_is_reproducible(transfer_results, tmp_path):
    store = ResultStore(transfer_results)
    put(store, 'C', 'clean', 0, 40)
    put(store, 'C', 'fgsm', 8, 12)                          # white-box, lower than every transfer
    put(store, 'A', 'fgsm', 8, 35, source='C')              # A: B gives 40, C gives 35 -> C strongest
    put(store, 'B', 'fgsm', 8, 30, source='C')              # B: tie with A's 30 -> both bold
    put(store, 'C', 'fgsm', 8, 25, source='A')
    put(store, 'C', 'fgsm', 8, 20, source='B')
    first = make_leaderboard(transfer_results, tmp_path / 'one')
    rows = _table_after(first['readme'].read_text(), 'IoU ratio (%):')
    bold = [[c.startswith('**') for c in row[1:]] for row in rows[2:]]
    assert bold == [[False, False, True], [True, False, True], [False, True, False]]
    assert [[c.endswith('†') for c in row[1:]] for row in rows[2:]] == [[i == j for j in range(3)] for i in range(3)]
    second = make_leaderboard(transfer_results, tmp_path / 'two')
    for path in first['figures'] + first['files'] + [first['readme']]:
        assert path.read_bytes() == (tmp_path / 'two' / path.name).read_bytes(), path.name
    assert second['readme'].name == 'README.md'


def test_scale_ids_order_and_labels():
    ids = ['fcn', 'X', 'X.s1', 'X.s0.5', 'X.unaries', 'X.s0.75', 'aaa']
    assert order_ids(ids) == ['X.s0.5', 'X.s0.75', 'X.s1', 'X', 'X.unaries', 'aaa', 'fcn']
    assert order_ids(['B', 'A+B', 'A']) == ['A', 'A+B', 'B']      # no scale ids: by name


def test_scale_table_in_the_layout_of_arnab_table_1(tmp_path):
    store = ResultStore(tmp_path / 'results')
    sources = ['X.s0.5', 'X.s0.75', 'X.s1', 'X']
    targets = sources + ['fcn_vgg', 'deeplab_vgg']
    scales = {'X.s0.5': 0.5, 'X.s0.75': 0.75, 'X.s1': 1.0}
    correct = {}
    for i, target in enumerate(targets):
        put(store, target, 'clean', 0, 45, scale=scales.get(target, 1.0))
        for j, source in enumerate(sources):
            for k, attack in enumerate(('fgsm', 'ifgsm_ll')):
                c = 5 + 3 * i + 2 * j + k
                correct[attack, target, source] = c
                put(store, target, attack, 8, c, source=None if source == target else source,
                    scale=scales.get(target, 1.0))
    df = load_results(tmp_path / 'results')
    blocks, families = scale_table(df)
    assert families == ['X'] and [title for title, _ in blocks] == ['FGSM ε=8', 'Iterative FGSM II ε=8']
    for (title, m), attack in zip(blocks, ('fgsm', 'ifgsm_ll')):
        assert list(m.index) == ['X.s0.5', 'X.s0.75', 'X.s1', 'X', 'deeplab_vgg', 'fcn_vgg']
        assert list(m.columns) == sources
        for t in m.index:
            for s in m.columns:
                assert m.loc[t, s] == pytest.approx(miou(correct[attack, t, s]) / miou(45))
    assert sorted(summary_table(df).model) == sorted(sources)   # the non-source targets are not ranked
    readme = make_leaderboard(tmp_path / 'results', tmp_path / 'out')['readme'].read_text()
    rows = _table_after(readme, '### Scale table')
    assert rows[0] == ['network evaluated'] + [f'{a} ε=8: {s}' for a in ('FGSM', 'Iterative FGSM II')
                                               for s in ('50%', '75%', '100%', 'multiscale')]
    assert [r[0] for r in rows[2:]] == ['X 50%', 'X 75%', 'X 100%', 'X multiscale', 'deeplab_vgg',
                                        'fcn_vgg']
    # values grow with the source index, so the strongest transfer source is the first off-diagonal one
    assert rows[2][1] == f'{100 * miou(correct["fgsm", "X.s0.5", "X.s0.5"]) / miou(45):.1f}†'
    assert rows[2][2].startswith('**') and rows[3][1].startswith('**') and rows[6][1].startswith('**')
    assert re.fullmatch(r'\d+\.\d†', rows[5][4]) and re.fullmatch(r'\d+\.\d†', rows[5][8])
    assert 'Targets evaluated on transferred examples only' in readme and 'deeplab_vgg, fcn_vgg' in readme


def test_suite_without_transfer_has_no_transfer_section(tmp_path):
    store = ResultStore(tmp_path / 'results')
    put(store, 'A', 'clean', 0, 50)
    put(store, 'A', 'fgsm', 8, 20)
    written = make_leaderboard(tmp_path / 'results', tmp_path / 'out')
    readme = written['readme'].read_text()
    assert '### Transfer' not in readme and 'Scale table' not in readme
    assert {p.name for p in (tmp_path / 'out').iterdir()} == {
        'README.md', 't.csv', 't_per_class_iou.csv', 't_single_eps.png', 't_single_eps.svg', 'site',
        'manifest.json'}
    assert not (tmp_path / 'out' / 'site' / 'transfer.html').exists()
    import pandas as pd
    assert 'source' not in pd.read_csv(tmp_path / 'out' / 't.csv').columns

"""Leaderboard: a pure function of records; numbers recomputed and checked."""
import numpy as np
import pytest

from benchmark.cells import CellKey
from benchmark.errors import ResultsError
from benchmark.store import ResultStore, make_record
from leaderboard.report import load_results, make_leaderboard, summary_table

PROV = {'packages': {}, 'git_sha': None, 'seed': 0, 'config_hash': 'x', 'wall_time_s': 0.0,
        'created': '2026-01-01T00:00:00+00:00', 'device': 'cpu'}
STATS = {'gradient_passes_per_image': 1, 'forward_images': 1, 'gradient_images': 1}


def put(store, model, attack, eps, correct):
    """Two classes, 100 pixels: `correct` of 50 pixels of each class right → IoU computable by hand."""
    conf = np.array([[correct, 50 - correct], [50 - correct, correct]])
    key = CellKey('s', 'd', model, attack, {}, eps)
    store.write(make_record(key, dataset={'name': 'd', 'split': 'val', 'image_ids_sha256': 'a' * 64},
                            class_names=['x', 'y'], conf_gt=conf, conf_clean=None, conf_target=None,
                            num_images=1, attack_stats=STATS, provenance=PROV))


@pytest.fixture
def results(tmp_path):
    store = ResultStore(tmp_path / 'results')
    for model, clean, adv in [('robust', 50, (40, 30)), ('fragile', 45, (10, 5))]:
        put(store, model, 'clean', 0, clean)
        for eps, c in zip((4, 8), adv):
            put(store, model, 'fgsm', eps, c)
    return tmp_path / 'results'


def test_iou_ratio_and_ranking(results):
    df = load_results(results)
    iou = lambda c: c / (100 - c)   # noqa: E731  per class: c / (50 + 50 - c)
    row = df[(df.model == 'robust') & (df.epsilon == 8)].iloc[0]
    assert row.miou == pytest.approx(iou(30)) and row.clean_miou == pytest.approx(iou(50))
    assert row.iou_ratio == pytest.approx(iou(30) / iou(50))
    table = summary_table(df)
    assert list(table.model) == ['robust', 'fragile']
    assert table.loc[1, 'FGSM ε=8'] == pytest.approx(iou(5) / iou(45))
    assert table.loc[1, 'FGSM mean'] == pytest.approx((iou(10) + iou(5)) / 2 / iou(45))


def test_render(results, tmp_path):
    written = make_leaderboard(results, tmp_path / 'out')
    text = written['readme'].read_text()
    assert '| 1 | robust |' in text and '| 2 | fragile |' in text
    assert (tmp_path / 'out' / 's_iou_ratio.png').is_file() and (tmp_path / 'out' / 's.csv').is_file()


def test_edited_metric_is_caught(results):
    import json
    path = next(results.rglob('fgsm_eps8_*.json'))
    rec = json.loads(path.read_text())
    rec['metrics']['miou'] = 0.99
    path.write_text(json.dumps(rec))
    with pytest.raises(ResultsError, match='corrupt'):
        load_results(results)


def test_no_results(tmp_path):
    with pytest.raises(ResultsError, match='no result records'):
        make_leaderboard(tmp_path / 'empty', tmp_path / 'out')


def put_variant(store, model, spec, eps, conf_gt, conf_clean=None, conf_target=None, params=None):
    key = CellKey('v', 'd', model, spec['type'] if spec else 'clean', params or {}, eps)
    prov = dict(PROV, attack_spec=spec) if spec else PROV
    store.write(make_record(key, dataset={'name': 'd', 'split': 'val', 'image_ids_sha256': 'a' * 64},
                            class_names=['x', 'y'], conf_gt=conf_gt, conf_clean=conf_clean,
                            conf_target=conf_target, num_images=1, attack_stats=STATS, provenance=prov))


def test_attack_variants_and_targeted_table(tmp_path):
    store = ResultStore(tmp_path / 'results')
    eye = np.array([[50, 0], [0, 50]])
    put_variant(store, 'm', None, 0, eye)
    put_variant(store, 'm', {'type': 'pgd', 'num_steps': 20, 'seed': 1}, 8, np.array([[40, 10], [10, 40]]),
                params={'num_steps': 20})
    put_variant(store, 'm', {'type': 'pgd', 'num_steps': 100, 'seed': 1}, 8, np.array([[30, 20], [20, 30]]),
                params={'num_steps': 100})
    hide = {'kind': 'hide_class', 'hidden_class': 1}
    # clean prediction: 50 pixels of class 1 (hidden), 50 of class 0; 30 hidden pixels now class 0,
    # and 5 background pixels changed
    conf_clean = np.array([[45, 5], [30, 20]])
    conf_target = np.array([[75, 25], [0, 0]])
    put_variant(store, 'm', {'type': 'targeted_ifgsm', 'target': hide}, 8, eye, conf_clean, conf_target,
                params={'target': hide})
    put_variant(store, 'm', {'type': 'targeted_ifgsm', 'target': hide}, 4, eye, conf_clean, conf_clean,
                params={'target': hide})
    df = load_results(tmp_path / 'results')
    variants = set(df.variant)
    assert variants == {'clean', 'PGD (num_steps=20)', 'PGD (num_steps=100)', 'Targeted I-FGSM'}
    assert df.attrs['common_options']['v'] == ['PGD: seed=1', 'Targeted I-FGSM: hide class 1']
    table = summary_table(df)
    assert table.loc[0, 'PGD (num_steps=100) ε=8'] == pytest.approx((30 / 70) / 1.0)
    assert table.loc[0, 'PGD (num_steps=20) ε=8'] == pytest.approx((40 / 60) / 1.0)
    from leaderboard.report import targeted_table
    t = targeted_table(df)
    assert len(t) == 2
    row = t.iloc[1]
    assert row['success rate'] == pytest.approx(0.75)
    assert row['class pixels hidden'] == pytest.approx(30 / 50)
    assert row['background preserved'] == pytest.approx(45 / 50)
    assert row['fooling rate'] == pytest.approx(35 / 100)
    written = make_leaderboard(tmp_path / 'results', tmp_path / 'board')
    readme = (tmp_path / 'board' / 'README.md').read_text()
    assert 'Targeted attacks' in readme and '| m | Targeted I-FGSM | 8 | 75.0 | 60.0 | 90.0 | 35.0 |' in readme
    assert ('v', 'd', 'targeted') in written['tables']
    assert (tmp_path / 'board' / 'v_targeted.png').stat().st_size > 1000


def test_every_model_of_a_large_leaderboard_gets_its_own_line_style():
    from leaderboard.report import _model_styles
    models = [f'model_{i}' for i in range(30)]
    styles = _model_styles(models)
    keys = {(s['color'], s['marker'], s['linestyle']) for s in styles.values()}
    assert len(keys) == len(models)
    assert len({s['color'] for s in list(styles.values())[:20]}) == 20

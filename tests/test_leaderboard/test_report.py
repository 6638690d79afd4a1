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


def put(store, model, attack, eps, correct, provenance=PROV):
    """Two classes, 100 pixels: `correct` of 50 pixels of each class right → IoU computable by hand."""
    conf = np.array([[correct, 50 - correct], [50 - correct, correct]])
    key = CellKey('s', 'd', model, attack, {}, eps)
    store.write(make_record(key, dataset={'name': 'd', 'split': 'val', 'image_ids_sha256': 'a' * 64},
                            class_names=['x', 'y'], conf_gt=conf, conf_clean=None, conf_target=None,
                            num_images=1, attack_stats=STATS, provenance=provenance))


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


def test_edited_metric_is_refused_and_the_rest_renders(results, tmp_path):
    import json
    path = next((results / 's' / 'fragile').glob('fgsm_eps8_*.json'))
    rec = json.loads(path.read_text())
    rec['metrics']['miou'] = 0.99
    path.write_text(json.dumps(rec))
    df = load_results(results)
    assert len(df) == 5 and str(path) not in set(df.path)
    (problem,) = df.attrs['refused']
    assert (problem.file, problem.field) == (str(path), 'metrics.miou') and 'differs' in problem.reason
    written = make_leaderboard(results, tmp_path / 'out')
    text = written['readme'].read_text()
    assert '## Refused records' in text
    assert f'- s/fragile/{path.name}: metrics.miou: stated 0.99 differs' in text.replace('\\_', '_')
    assert '| 1 | robust |' in text                        # the valid rest is rendered and ranked
    assert '|  | fragile |' in text and 'incomplete (1/2 cells)' in text


def test_copied_results_folder_does_not_crash_the_report(results, tmp_path):
    import shutil
    shutil.copytree(results / 's', results / 's_copy')          # cp -r results/demo results/demo_copy
    written = make_leaderboard(results, tmp_path / 'out')
    table = written['tables'][('s', 'd')]
    assert list(table.model) == ['robust', 'fragile'] and list(table['rank']) == [1, 2]
    assert len(written['refused']) == 6 and {p.field for p in written['refused']} == {'key.suite'}
    assert written['readme'].read_text().count('- s_copy/') == 6


def test_all_records_refused(results, tmp_path):
    for path in results.rglob('*.json'):
        path.write_text('[]')
    with pytest.raises(ResultsError, match='no valid result records.*all 6 record file.*is a JSON list'):
        make_leaderboard(results, tmp_path / 'out')


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
    """Static figures group models by family: one hue per family, members told apart by shade,
    line style and marker; every model of the demo zoo and of a 40-member family has its own style."""
    from leaderboard.report import _model_styles
    demo = ['crfrnn_r18-w16_synthcity', 'deeplabv2-aspp-msc_r18-w16_synthcity', 'enet_synthcity',
            'segnet_vgg16bn-c16_synthcity', 'pspnet_r18-w16_synthcity', 'fcn_r18-w16_synthcity',
            'dilatednet-context_vgg16-w8_synthcity', 'dilatednet-front_vgg16-w8_synthcity',
            'deeplabv2-aspp_vgg16-w8_synthcity', 'deeplabv2-aspp_r18-w16_synthcity', 'icnet_r18-w16_synthcity',
            'fcn8s_vgg16-w8_synthcity', 'fcn16s_vgg16-w8_synthcity', 'fcn32s_vgg16-w8_synthcity',
            'fcn8s_r18-w16_synthcity']
    styles = _model_styles(demo)
    assert len({(s['color'], s['marker'], s['linestyle']) for s in styles.values()}) == 15
    import colorsys
    hue = {m: round(colorsys.rgb_to_hsv(*s['color'])[0], 6) for m, s in styles.items()}
    fcn = [m for m in demo if m.startswith('fcn')]
    assert len(fcn) == 5 and len({hue[m] for m in fcn}) == 1 and len({styles[m]['color'] for m in fcn}) == 5
    assert hue['pspnet_r18-w16_synthcity'] != hue['fcn_r18-w16_synthcity']
    from leaderboard.data import family_of
    families = {family_of(m) for m in demo}
    assert families == {'crfrnn', 'deeplabv2', 'enet', 'segnet', 'pspnet', 'fcn', 'dilatednet', 'icnet'}
    many = [f'model_{i}' for i in range(40)] + [f'other{i}_x' for i in range(12)]
    styles = _model_styles(many)
    assert len({(s['color'], s['marker'], s['linestyle']) for s in styles.values()}) == len(many)


def test_incomplete_and_chance_level_models_are_not_ranked(results, tmp_path):
    store = ResultStore(results)
    # one cell of two, with a far better IoU ratio than any complete model
    put(store, 'partial', 'clean', 0, 45)
    put(store, 'partial', 'fgsm', 8, 45)
    # near chance: 25 of 50 pixels per class right, mIoU 1/3 < 2 x 1/4 (the most frequent class
    # everywhere); hardly changed by the attack, so its IoU ratio is near 1
    put(store, 'chance', 'clean', 0, 25)
    for eps in (4, 8):
        put(store, 'chance', 'fgsm', eps, 24)
    table = summary_table(load_results(results))
    assert list(table.model) == ['robust', 'fragile', 'partial', 'chance']
    assert list(table['rank']) == [1, 2, '', '']
    assert table['mean IoU ratio'][2] > table['mean IoU ratio'][3] > table['mean IoU ratio'][0]
    flags = dict(zip(table.model, table['flags']))
    assert flags['robust'] == flags['fragile'] == ''
    assert flags['partial'] == 'incomplete (1/2 cells)'
    assert flags['chance'].startswith('near chance level (clean mIoU 33.3 < 2 × 25.0')
    assert list(table.columns)[-1] == 'flags'
    text = make_leaderboard(results, tmp_path / 'out')['readme'].read_text()
    assert '| 1 | robust |' in text and '| 2 | fragile |' in text and '|  | partial |' in text


def test_random_weights_model_is_flagged_and_not_ranked(results):
    store = ResultStore(results)
    prov = dict(PROV, random_weights=True)
    put(store, 'untrained', 'clean', 0, 50, prov)
    for eps in (4, 8):
        put(store, 'untrained', 'fgsm', eps, 49, prov)
    table = summary_table(load_results(results))
    row = table[table.model == 'untrained'].iloc[0]
    assert row['rank'] == '' and 'random weights' in row['flags']
    assert list(table.model)[:2] == ['robust', 'fragile']


def test_majority_class_miou():
    from leaderboard.report import majority_class_miou
    # rows: 60, 30, 10 pixels, class 3 absent -> predicting class 0 everywhere: IoU 0.6, 0, 0
    conf = np.array([[50, 10, 0, 0], [5, 25, 0, 0], [0, 0, 10, 0], [0, 0, 0, 0]])
    assert majority_class_miou(conf) == pytest.approx(0.6 / 3)
    from benchmark import metrics
    constant = np.zeros_like(conf)
    constant[:, 0] = conf.sum(axis=1)
    assert metrics.mean_iou(constant) == pytest.approx(majority_class_miou(conf))


def test_markdown_escape():
    from leaderboard.report import md_escape
    assert md_escape('a|b') == 'a\\|b'
    assert md_escape('x\ny') == 'x y'
    assert md_escape('<script>') == '&lt;script&gt;'
    assert md_escape('[l](http://x) `c` *e* _u_ ~s~ $m$') == \
        '\\[l\\](http://x) \\`c\\` \\*e\\* \\_u\\_ \\~s\\~ \\$m\\$'
    assert md_escape('fcn-8s+crf.v2') == 'fcn-8s+crf.v2'
    assert md_escape('fcn_r18-w16_synthcity num_steps=20') == 'fcn_r18-w16_synthcity num_steps=20'
    assert md_escape('_a b_ c__d') == '\\_a b\\_ c\\_\\_d'


def _unescaped_pipes(line):
    import re
    return len(re.findall(r'(?<!\\)\|', line))


def test_record_strings_cannot_break_the_tables(tmp_path):
    """A valid record whose model name and attack options contain Markdown: every table row keeps
    its column count and no raw HTML or link reaches the README."""
    store = ResultStore(tmp_path / 'results')
    eye = np.array([[50, 0], [0, 50]])
    model = 'm_x_*y*'.replace('*', '+')               # names allow letters, digits and _ . + -
    nasty = {'type': 'pgd', 'init': 'a|b\n| c | <img src=x onerror=alert(1)> [link](http://x) `code`'}
    put_variant(store, model, None, 0, eye)
    put_variant(store, model, nasty, 8, np.array([[40, 10], [10, 40]]), params={'init': nasty['init']})
    for eps, c in ((4, 45), (8, 42)):
        put_variant(store, model, dict(nasty, init='$x$'), eps, np.array([[c, 50 - c], [50 - c, c]]),
                    params={'init': '$x$'})
    readme = make_leaderboard(tmp_path / 'results', tmp_path / 'out')['readme'].read_text()
    table = [line for line in readme.splitlines() if line.startswith('|')]
    assert len(table) >= 3 and len({_unescaped_pipes(line) for line in table}) == 1
    import re
    assert '<img' not in readme and '&lt;img' in readme
    assert not re.search(r'(?<!\\)\]\(http', readme) and not re.search(r'(?<!\\)`code', readme)
    assert 'm_x\\_+y+' in readme
    assert (tmp_path / 'out' / 'v_iou_ratio.png').stat().st_size > 1000   # '$' does not break the plot


def test_leaderboard_files_are_readable_by_others(results, tmp_path):
    import os
    old = os.umask(0o022)
    try:
        make_leaderboard(results, tmp_path / 'out')
    finally:
        os.umask(old)
    files = sorted(p for p in (tmp_path / 'out').rglob('*') if p.is_file())
    top = {f.name for f in files if f.parent == tmp_path / 'out'}
    assert top == {'README.md', 's.csv', 's_per_class_iou.csv', 's_iou_ratio.png', 's_iou_ratio.svg',
                   'manifest.json'}
    assert (tmp_path / 'out' / 'site' / 'index.html').is_file()
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in files)


def test_report_ratios_and_success_rates_are_the_metrics_functions(results):
    """The report computes no metric of its own: its IoU ratio and targeted success rate are
    bit-identical to benchmark.metrics' definitions applied to the records."""
    from benchmark import metrics
    df = load_results(results)
    np.testing.assert_array_equal(df.iou_ratio.to_numpy(),
                                  [metrics.iou_ratio(m, c) for m, c in zip(df.miou, df.clean_miou)])
    assert (df[df.attack == 'clean'].iou_ratio == 1.0).all()


def test_report_does_not_import_torch_or_model_code():
    import subprocess
    import sys
    from pathlib import Path
    code = ('import sys; import leaderboard.report, leaderboard.site, leaderboard.data, leaderboard.tables, '
            'leaderboard.figures, leaderboard.flags, leaderboard.stats; '
            'bad = sorted(m for m in sys.modules if m.split(".")[0] in '
            '("torch", "attacks", "model_zoo", "mmseg", "mmcv", "mmengine")); print(bad); '
            'sys.exit(1 if bad else 0)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

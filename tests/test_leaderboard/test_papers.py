"""Paper tables beside the published numbers (leaderboard/papers.py, leaderboard/published/*.yaml).

The published values are compared with numbers typed here again from the papers' text (Arnab et
al. 2018 Table 1, Xiang et al. Table 2, Metzen et al. 2017 Tables 1-2, Poursaeed et al. 2018
Table 5), not read back from the YAML files. Our side comes from hand-made DataFrames whose
values are exact binary fractions (0.375 → 37.5 %), so every cell of a table is known exactly.
"""
import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from common.errors import ConfigError, ResultsError
from leaderboard import papers
from leaderboard.papers import (AGREES, CHECKS, DISAGREES, NO_MODEL, NOT_TESTABLE, PAPER_KEYS,
                                PublishedDataError, build_report, load_published, make_paper_tables,
                                paper_reports, to_latex, to_markdown, validate_published)

REPO = Path(__file__).resolve().parents[2]
VAL = 'synthetic_cityscapes-val-53911214'
TRAIN = 'synthetic_cityscapes-train-a05b6a52'
MSC = 'deeplabv2-aspp-msc_r18-w16_synthcity'


# ------------------------------------------------------------------------------------------
# The published files
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def published():
    return {key: load_published(key) for key in PAPER_KEYS}


def test_every_paper_loads_with_its_exact_number_of_values(published):
    counts = {k: len(p.values) for k, p in published.items()}
    # Arnab: 2 + 2 + 2 values of Fig. 2/3 in the text, 2 bounds, the 0.8 % minimum, 56 of Table 1,
    # 4 of Sec. 7.1; Metzen: 8 + 16 + 8 (Table 3, no numbers) + 3; Fischer: 2 bounds; Xiang:
    # 24 + 32; Poursaeed: 6 of Table 5
    assert counts == {'arnab2018': 69, 'metzen2017': 35, 'fischer2017': 2, 'xiang2022': 56,
                      'poursaeed2018': 6}
    assert sum(v.value is None for v in published['metzen2017'].values) == 8
    assert sum(v.value is None for v in published['xiang2022'].values) == 2   # the two "—" of Table 1


def test_published_values_match_the_papers_text(published):
    arnab = published['arnab2018']
    row = {v.column: v.value for v in arnab.values
           if v.table == 'Table 1' and v.row == 'Deeplab v2 100% scale (ResNet)'}
    assert row == {'FGSM, source 50%': 93.6, 'FGSM, source 75%': 57.9, 'FGSM, source 100%': 37.7,
                   'FGSM, source multiscale': 37.2, 'Iterative FGSM II, source 50%': 100.0,
                   'Iterative FGSM II, source 75%': 79.0, 'Iterative FGSM II, source 100%': 15.5,
                   'Iterative FGSM II, source multiscale': 16.8}
    assert arnab.value('t1-ifgsm2-fcnres-msc').value == 74.1
    assert arnab.value('fig3-fgsm32-pspnet').value == 2.5 and arnab.value('fig2-fgsm32-pspnet').value == 27.9
    assert (arnab.value('s71-crf-entropy').value, arnab.value('s71-crf-entropy').unit) == (0.025, 'nats')
    xiang = published['xiang2022']
    t2 = {(v.attack, v.model): v.value for v in xiang.values if v.table == 'Table 2' and v.source == 'FCN-Res101'}
    assert t2 == {('MI-FGSM', 'FCN8-VGG'): 83.77, ('MI-FGSM', 'FCN16-VGG'): 83.53, ('MI-FGSM', 'FCN-Res50'): 68.68,
                  ('MI-FGSM', 'FCN-Res101'): 22.18, ('PGD-20', 'FCN8-VGG'): 89.08, ('PGD-20', 'FCN16-VGG'): 88.89,
                  ('PGD-20', 'FCN-Res50'): 87.64, ('PGD-20', 'FCN-Res101'): 21.96}
    assert [v.value for v in xiang.values if v.table == 'Table 1' and v.model == 'FCN-Res50'] == \
        [93.25, 71.98, 16.24, 16.46, 13.01, None]
    metzen = published['metzen2017']
    assert [metzen.value(f't1-val-eps{e}').value for e in (2, 5, 10, 20)] == [60.9, 80.3, 91.0, 96.3]
    assert [metzen.value(f't2-val-hidden-eps{e}').value for e in (2, 5, 10, 20)] == [34, 81, 92, 93]
    assert [metzen.value(f't2-train-preserved-eps{e}').value for e in (2, 5, 10, 20)] == [95, 84, 87, 89]
    pours = published['poursaeed2018']
    assert [pours.value(f't5-gap-eps{e}').value for e in (5, 10, 20)] == [79.5, 92.1, 97.2]
    assert [pours.value(f't5-uapseg-eps{e}').value for e in (5, 10, 20)] == [80.3, 91.0, 96.3]
    fischer = published['fischer2017']
    assert [(v.value, v.relation, v.epsilon) for v in fischer.values] == [(85, '>', 10), (97, '>', 10)]


def test_every_finding_has_a_check_and_every_check_a_finding(published):
    ids = [f['id'] for p in published.values() for f in p.findings]
    assert len(ids) == len(set(ids)) == 35
    assert set(ids) == set(CHECKS)


def _raw(key):
    return yaml.safe_load(papers.published_path(key).read_text(encoding='utf-8'))


def _first_value(data):
    return data['groups'][0]['values'][0]


@pytest.mark.parametrize('mutate, field, reason', [
    (lambda d: _first_value(d).update(unit='%%'), '.unit', "'%%' is not one of"),
    (lambda d: _first_value(d).update(unit='nats'), '.unit', 'is not the unit of IoU ratio'),
    (lambda d: _first_value(d).update(value=120), '.value', 'outside the range'),
    (lambda d: _first_value(d).update(value=-1), '.value', 'outside the range'),
    (lambda d: _first_value(d).update(value='2.5'), '.value', 'not a finite number'),
    (lambda d: _first_value(d).update(value=None), '.missing', 'must say why'),
    (lambda d: _first_value(d).update(epsilon=300), '.epsilon', 'not an L∞ bound in (0, 255]'),
    (lambda d: _first_value(d).update(epsilon=0), '.epsilon', 'not an L∞ bound in (0, 255]'),
    (lambda d: _first_value(d).update(epsilon=None), '.epsilon', 'only for clean inputs'),
    (lambda d: _first_value(d).update(metric='mIoU ratio'), '.metric', 'is not one of'),
    (lambda d: _first_value(d).update(model='SegFormer'), '.model', 'has no entry under models'),
    (lambda d: _first_value(d).update(attack='PGD'), '.attack', 'has no entry under attacks'),
    (lambda d: _first_value(d).update(approximate=True), '.how_read', 'how it was read off the plot'),
    (lambda d: _first_value(d).update(approx=True), '.approx', 'unknown field'),
    (lambda d: _first_value(d).update(relation='~'), '.relation', 'is not one of'),
    (lambda d: _first_value(d).update(id=d['groups'][0]['values'][1]['id']), '.id', 'is used twice'),
    (lambda d: d['groups'][0]['defaults'].pop('dataset'), '.dataset', 'missing (required)'),
    (lambda d: d['groups'][0].update(section='fig9'), 'groups[0].section', 'is not a section id'),
    (lambda d: d.pop('citation'), 'citation', 'missing (required)'),
    (lambda d: d.update(citation='Arnab et al. 2018'), 'citation', 'BibTeX'),
    (lambda d: d.update(key='arnab'), 'key', 'is not the file name'),
    (lambda d: d['findings'][0].update(section='nowhere'), 'findings[0].section', 'is not a section id'),
    (lambda d: d['models'][0].update(ours=3), 'models[0].ours', 'is not a model id'),
])
def test_a_malformed_entry_is_refused_with_file_field_and_reason(tmp_path, mutate, field, reason):
    data = copy.deepcopy(_raw('arnab2018'))
    mutate(data)
    path = tmp_path / 'arnab2018.yaml'
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding='utf-8')
    with pytest.raises(PublishedDataError) as info:
        load_published(path)
    e = info.value
    assert e.file == str(path)
    assert e.field.endswith(field), e.field
    assert reason in e.reason, e.reason
    assert str(e) == f'{path}: {e.field}: {e.reason}'
    assert isinstance(e, ConfigError)   # the command line prints it as a one-paragraph error


def test_the_field_names_the_group_value_and_its_id(tmp_path):
    data = copy.deepcopy(_raw('xiang2022'))
    data['groups'][1]['values'][3]['value'] = 101.5
    with pytest.raises(PublishedDataError) as info:
        validate_published(data, tmp_path / 'xiang2022.yaml')
    assert info.value.field == 'groups[1].values[3] (id t2-mifgsm-fcn8vgg-to-res101).value'


def test_invalid_yaml_and_unknown_papers_are_refused(tmp_path):
    path = tmp_path / 'x.yaml'
    path.write_text('key: [unclosed\n')
    with pytest.raises(PublishedDataError, match=r'x\.yaml: \(file\): is not valid YAML'):
        load_published(path)
    with pytest.raises(ConfigError, match='expected one of arnab2018, metzen2017'):
        load_published('arnab2019')


# ------------------------------------------------------------------------------------------
# Reports from hand-made results
# ------------------------------------------------------------------------------------------

def cell(suite, model, attack, eps=0.0, *, iou_ratio=math.nan, miou=math.nan, source=None, params=None,
         dataset=VAL, num_images=8, **metrics):
    """One row of load_results' DataFrame (fractions, as stored)."""
    return {'suite': suite, 'dataset': dataset, 'model': model, 'attack': attack, 'epsilon': float(eps),
            'source_model': source, 'params': str(params or {}), 'num_images': num_images,
            'iou_ratio': iou_ratio, 'miou': miou, 'path': '', **metrics}


def frame(rows):
    return pd.DataFrame(rows)


def section(report, heading_start):
    hits = [s for s in report.sections if s.heading.startswith(heading_start)]
    assert len(hits) == 1, [s.heading for s in report.sections]
    return hits[0]


def by_id(sec, value_id):
    rows = sec.table[sec.table['value id'] == value_id]
    assert len(rows) == 1, value_id
    return rows.iloc[0]


@pytest.fixture(scope='module')
def arnab_table1_report():
    rows = [
        cell('arnab2018_table1', f'{MSC}.s0.5', 'fgsm', 8, iou_ratio=0.375),                       # white-box
        cell('arnab2018_table1', f'{MSC}.s0.5', 'fgsm', 8, iou_ratio=0.875, source=f'{MSC}.s0.75'),
        cell('arnab2018_table1', f'{MSC}.s0.5', 'ifgsm_ll', 8, iou_ratio=0.25, source=MSC,
             params={'alpha': 1, 'num_steps': 10}),
        cell('arnab2018_table1', 'fcn8s_vgg16-w8_synthcity', 'fgsm', 8, iou_ratio=0.625, source=MSC),
        cell('demo', 'fcn8s_vgg16-w8_synthcity', 'fgsm', 8, iou_ratio=0.125),   # another suite: never used
    ]
    return paper_reports(frame(rows), ['arnab2018'])[0]


def test_our_value_stands_beside_the_right_published_value(arnab_table1_report):
    t1 = section(arnab_table1_report, 'Table 1')
    assert len(t1.table) == 56
    white = by_id(t1, 't1-fgsm-dl50-s50')
    assert (white['published'], white['ours'], white['ours status']) == (37.3, 37.5, 'ok')
    assert (white['our model'], white['our suite']) == (f'{MSC}.s0.5', 'arnab2018_table1')
    assert 'not Cityscapes' in white['our dataset'] and white['published dataset'].startswith('Pascal VOC 2012')
    transfer = by_id(t1, 't1-fgsm-dl50-s75')
    assert (transfer['published'], transfer['ours']) == (70.5, 87.5)
    assert by_id(t1, 't1-ifgsm2-dl50-msc')[['published', 'ours']].tolist() == [20.0, 25.0]
    assert by_id(t1, 't1-fgsm-fcnvgg-msc')[['published', 'ours']].tolist() == [65.4, 62.5]
    assert by_id(t1, 't1-fgsm-dl50-s100')['published'] == 84.8


def test_a_cell_without_a_record_says_so(arnab_table1_report):
    t1 = section(arnab_table1_report, 'Table 1')
    missing = by_id(t1, 't1-fgsm-dl50-s100')
    assert math.isnan(missing['ours'])
    assert missing['ours status'] == 'not run (no record in arnab2018_table1)'
    assert (t1.table['ours status'] == 'ok').sum() == 4
    fig4 = section(arnab_table1_report, 'Fig. 4')
    assert set(fig4.table['ours status']) == {'not run (no record in arnab2018_crf, demo)'}
    md = to_markdown(arnab_table1_report)
    line = next(l for l in md.splitlines() if l.startswith('| Deeplab v2 50% scale (ResNet) | FGSM, source 100%'))
    assert line == ('| Deeplab v2 50% scale (ResNet) | FGSM, source 100% | 84.8 | not run (no record in '
                    'arnab2018_table1) | deeplabv2-aspp-msc_r18-w16_synthcity.s0.5 |')


def test_a_network_our_zoo_lacks_says_so():
    data = copy.deepcopy(_raw('xiang2022'))
    next(m for m in data['models'] if m['paper'] == 'FCN-Res101')['ours'] = None
    pub = validate_published(data, papers.published_path('xiang2022'))
    report = build_report(pub, frame([cell('xiang_transfer', 'fcn_r18-w16_synthcity', 'clean', pixel_accuracy=0.75)]))
    t1 = section(report, 'Table 1')
    assert by_id(t1, 't1-res101-clean')['ours status'] == NO_MODEL
    assert by_id(t1, 't1-res50-clean')[['ours', 'ours status']].tolist() == [75.0, 'ok']
    nets = section(report, 'Networks')
    assert nets.table.set_index('paper network').loc['FCN-Res101', 'our model'] == NO_MODEL


def test_the_missing_published_value_says_why(published):
    report = paper_reports(frame([cell('xiang', 'fcn_r18-w16_synthcity', 'pgd', 8, pixel_accuracy=0.25,
                                       params={'alpha': 0.04, 'num_steps': 200, 'random_start': True})]),
                           ['xiang2022'])[0]
    row = by_id(section(report, 'Table 1'), 't1-res50-pgd200')
    assert math.isnan(row['published']) and row['published status'].startswith('not run by the authors')
    assert (row['ours'], row['our suite']) == (25.0, 'xiang')


def test_split_and_parameters_pick_the_cell():
    static = {'alpha': 1, 'num_steps': 60, 'tile_size': None, 'omega': None, 'tau': 0.75,
              'target': {'kind': 'static', 'split': 'train', 'index': 0, 'source': 'ground_truth'}}
    hide = dict(static, omega=0.9999, tile_size=[128, 128], target={'kind': 'hide_class', 'hidden_class': 11})
    hide_no_omega = dict(hide, omega=None)
    rows = [cell('metzen2017', 'fcn_r18-w16_synthcity', 'universal', 10, params=static, dataset=TRAIN,
                 targeted_success_rate=0.75),
            cell('metzen2017', 'fcn_r18-w16_synthcity', 'universal', 10, params=static, targeted_success_rate=0.625),
            cell('metzen2017', 'fcn_r18-w16_synthcity', 'universal', 10, params=hide, class_pixels_hidden=0.5,
                 background_preserved=0.875),
            cell('metzen2017', 'fcn_r18-w16_synthcity', 'universal', 10, params=hide_no_omega,
                 class_pixels_hidden=0.125, background_preserved=0.9375)]
    report = paper_reports(frame(rows), ['metzen2017'])[0]
    t1 = section(report, 'Table 1')
    assert by_id(t1, 't1-train-eps10')['ours'] == 75.0
    assert by_id(t1, 't1-val-eps10')['ours'] == 62.5
    assert 'train split' in by_id(t1, 't1-train-eps10')['our dataset']
    t2 = section(report, 'Table 2')
    assert by_id(t2, 't2-val-hidden-eps10')['ours'] == 50.0
    assert by_id(t2, 't2-val-preserved-eps10')['ours'] == 87.5
    assert by_id(t2, 't2-train-hidden-eps10')['ours status'].startswith('not run')
    t3 = section(report, 'Table 3')
    assert by_id(t3, 't3-no-hidden')['ours'] == 12.5 and by_id(t3, 't3-0.9999-hidden')['ours'] == 50.0
    assert math.isnan(by_id(t3, 't3-no-hidden')['published'])
    # the ω trend: hidden rises (12.5 → 50), preserved falls (93.75 → 87.5), two ω only
    verdict = next(v for v in t3.verdicts if v.finding_id == 'm-omega-tradeoff')
    assert verdict.verdict == AGREES and '2 of 2 hold' in verdict.evidence


def test_an_aggregate_row_takes_the_extreme_over_our_models():
    rows = [cell('demo', 'enet_synthcity', 'fgsm', 0.25, iou_ratio=0.875),
            cell('demo', 'icnet_r18-w16_synthcity', 'fgsm', 0.25, iou_ratio=0.96875),
            cell('demo', 'icnet_r18-w16_synthcity', 'ifgsm_ll', 0.25, iou_ratio=0.5),
            cell('demo', 'icnet_r18-w16_synthcity', 'fgsm', 32, iou_ratio=0.0625)]
    sec = section(paper_reports(frame(rows), ['arnab2018'])[0], 'Fig. 2')
    bound = by_id(sec, 'fig23-eps025-fgsm-bound')
    assert (bound['ours'], bound['published'], bound['published relation']) == (96.875, 91.0, '<=')
    assert bound['our model'] == 'max over 2 models: icnet_r18-w16_synthcity'
    lowest = by_id(sec, 'fig3-single-step-lowest')
    assert lowest['ours'] == 6.25 and lowest['our model'].startswith('min over 2 models: icnet_r18-w16_synthcity')
    verdict = next(v for v in sec.verdicts if v.finding_id == 'eps025-degrades')
    assert verdict.verdict == DISAGREES and '2 of 3 hold' in verdict.evidence


def _dilated(front, context):
    """Demo cells of both Dilated-Nets: ``front`` / ``context`` = {(attack, ε): IoU ratio}."""
    rows = []
    for model, values in (('dilatednet-front_vgg16-w8_synthcity', front),
                          ('dilatednet-context_vgg16-w8_synthcity', context)):
        for (attack, eps), v in values.items():
            rows.append(cell('demo', model, attack, eps, iou_ratio=v))
    return frame(rows)


def _verdict(df, key, finding_id):
    report = paper_reports(df, [key])[0]
    return next(v for s in report.sections for v in s.verdicts if v.finding_id == finding_id)


def test_an_ordering_that_holds_agrees():
    front = {('fgsm', 2): 0.75, ('fgsm', 4): 0.5, ('ifgsm_ll', 2): 0.625, ('ifgsm_ll', 4): 0.25}
    context = {k: v - 0.125 for k, v in front.items()}
    v = _verdict(_dilated(front, context), 'arnab2018', 'dilated-front-beats-context')
    assert v.verdict == AGREES
    assert '4 of 4 hold (rule: all)' in v.evidence
    assert 'ε=2: 75.0 vs 62.5' in v.evidence
    assert str(v).startswith('agrees: Adding the "Context" module')


def test_an_ordering_that_fails_once_disagrees():
    front = {('fgsm', 2): 0.75, ('fgsm', 4): 0.5, ('ifgsm_ll', 2): 0.625, ('ifgsm_ll', 4): 0.25}
    context = {k: v - 0.125 for k, v in front.items()}
    context[('ifgsm_ll', 4)] = 0.375   # the context module more robust at one ε
    v = _verdict(_dilated(front, context), 'arnab2018', 'dilated-front-beats-context')
    assert v.verdict == DISAGREES
    assert '3 of 4 hold (rule: all)' in v.evidence and 'ε=4: 25.0 vs 37.5' in v.evidence


def test_a_typical_ordering_needs_more_than_half():
    # Xiang Table 2: MI-FGSM transfers better than PGD-20 in 2 of 3 pairs → agrees; in 1 of 3 → not
    def df(pairs):
        rows = []
        for (src, tgt), (mi, pgd) in pairs.items():
            rows.append(cell('xiang_transfer', tgt, 'mifgsm', 8, source=src, pixel_accuracy=mi,
                             params={'alpha': 0.4, 'num_steps': 20, 'decay': 1}))
            rows.append(cell('xiang_transfer', tgt, 'pgd', 8, source=src, pixel_accuracy=pgd,
                             params={'alpha': 0.4, 'num_steps': 20, 'random_start': True, 'seed': 0}))
        return frame(rows)
    vgg8, vgg16, r18 = 'fcn8s_vgg16-w8_synthcity', 'fcn16s_vgg16-w8_synthcity', 'fcn_r18-w16_synthcity'
    holds = df({(vgg8, vgg16): (0.25, 0.5), (vgg8, r18): (0.5, 0.75), (vgg16, r18): (0.75, 0.5)})
    v = _verdict(holds, 'xiang2022', 'x-mifgsm-transfers-better')
    assert v.verdict == AGREES and '2 of 3 hold (rule: more than half)' in v.evidence
    fails = df({(vgg8, vgg16): (0.25, 0.5), (vgg8, r18): (0.75, 0.5), (vgg16, r18): (0.75, 0.5)})
    assert _verdict(fails, 'xiang2022', 'x-mifgsm-transfers-better').verdict == DISAGREES
    # the paper's own Table 2 under the same rule, counted by hand: MI-FGSM leaves the lower
    # accuracy in 10 of the 12 transfer pairs (not FCN8-VGG ↔ FCN16-VGG)
    assert v.paper_check.startswith("The paper's own numbers under the same rule: agree (10 of 12 hold")


def test_the_papers_own_table_is_checked_with_the_same_rule():
    v = _verdict(frame([]), 'arnab2018', 't1-white-box-strongest')
    assert v.verdict == NOT_TESTABLE and 'not testable' in v.evidence
    # Arnab Table 1: the diagonal is the lowest of its row except FGSM at 100 % (37.7 vs 37.2)
    assert "agree (7 of 8 hold (rule: more than half): FGSM, 100%: diagonal 37.7 vs 37.2)" in v.paper_check


def test_an_empty_results_frame_gives_reports_that_say_not_run():
    reports = paper_reports(pd.DataFrame())
    assert [r.key for r in reports] == list(PAPER_KEYS)
    for r in reports:
        assert r.citation.startswith('@') and r.title
        for s in r.sections[1:]:
            assert len(s.table) > 0 and s.command.endswith(f'--paper {r.key}')
            assert set(s.table['ours status']) <= {'not run (no record in ' + ', '.join(
                papers_sections(r.key)[s.heading]) + ')'}
            assert all(v.verdict == NOT_TESTABLE for v in s.verdicts)


def papers_sections(key):
    return {s['heading']: s['suites'] for s in load_published(key).sections}


def test_confidence_comes_from_the_record_when_the_frame_lacks_it(tmp_path):
    record = tmp_path / 'clean.json'
    record.write_text(json.dumps({'attack_stats': {'prediction_confidence': {
        'mean_top_probability': 0.96875, 'mean_entropy_nats': 0.125}}}))
    rows = [cell('arnab2018_crf', 'crfrnn_r18-w16_synthcity', 'clean', path=str(record)),
            cell('arnab2018_crf', 'fcn_r18-w16_synthcity', 'clean', mean_top_probability=0.875,
                 mean_entropy_nats=0.5)]
    sec = section(paper_reports(frame(rows), ['arnab2018'])[0], 'Fig. 4')
    assert by_id(sec, 's71-crf-confidence')['ours'] == 96.875
    assert by_id(sec, 's71-crf-entropy')[['published', 'ours', 'unit']].tolist() == [0.025, 0.125, 'nats']
    assert by_id(sec, 's71-fcn-entropy')['ours'] == 0.5
    v = next(v for v in sec.verdicts if v.finding_id == 'crf-confidence')
    assert v.verdict == AGREES and '96.9 % vs FCN 87.5 %' in v.evidence


# ------------------------------------------------------------------------------------------
# Writers and the command
# ------------------------------------------------------------------------------------------

def _outside_comments(latex):
    return '\n'.join(l for l in latex.splitlines() if not l.lstrip().startswith('%'))


def test_latex_has_booktabs_rules_and_escapes(arnab_table1_report):
    latex = to_latex(arnab_table1_report)
    body = _outside_comments(latex)
    n_tables = len(arnab_table1_report.sections)
    assert body.count('\\begin{tabular}') + body.count('\\begin{longtable}') == n_tables
    # a longtable repeats its header (\\toprule) on every page; the bottom rule ends it once
    assert body.count('\\bottomrule') == n_tables
    assert body.count('\\toprule') == n_tables + body.count('\\begin{longtable}')
    assert body.count('\\midrule') >= n_tables
    assert 'deeplabv2-aspp-msc\\_r18-w16\\_synthcity.s0.5' in body
    assert re.search(r'(?<!\\)_', body) is None, 'an unescaped _'
    assert re.search(r'(?<!\\)%', body) is None, 'an unescaped %'
    assert 'Deeplab v2 50\\% scale (ResNet)' in body
    assert not re.search(r'[εω≤≥×<>]', body)
    assert '\\ensuremath{\\leq} 91' in body   # the Sec. 5.4 bound
    assert '\\begin{longtable}' in body       # Table 1 has 56 rows


def test_latex_goes_through_pandas_writer(monkeypatch, arnab_table1_report):
    calls = []
    original = pd.DataFrame.to_latex

    def spy(self, *a, **k):
        calls.append(k)
        return original(self, *a, **k)
    monkeypatch.setattr(pd.DataFrame, 'to_latex', spy)
    to_latex(arnab_table1_report)
    assert len(calls) == len(arnab_table1_report.sections) and all(k['escape'] for k in calls)


def test_markdown_escapes_and_lists_agreement(arnab_table1_report):
    md = to_markdown(arnab_table1_report)
    assert md.startswith('# On the Robustness of Semantic Segmentation Models to Adversarial Attacks')
    assert '```bibtex\n@inproceedings{arnab2018robustness,' in md
    assert md.count('\n## ') == len(arnab_table1_report.sections)
    assert '| Deeplab v2 50% scale (ResNet) | FGSM, source 50% | 37.3 | 37.5 |' in md
    assert 'Agreement with the paper:' in md and '- not testable: ' in md
    assert 'Command: `.venv/bin/python tools/run_benchmark.py benchmark/suites/arnab2018_table1.py && ' in md
    assert papers.md_text('a|b <x> *y* fcn_r18 _z_') == 'a\\|b \\<x\\> \\*y\\* fcn_r18 \\_z\\_'


def test_make_paper_tables_writes_both_files(tmp_path):
    results = tmp_path / 'results'
    results.mkdir()
    written = make_paper_tables(results, tmp_path / 'out', 'fischer2017')
    assert [w.key for w in written] == ['fischer2017']
    md, tex = tmp_path / 'out' / 'papers' / 'fischer2017.md', tmp_path / 'out' / 'papers' / 'fischer2017.tex'
    assert md.read_text() == written[0].markdown and '\\toprule' in tex.read_text()
    assert 'not run (no record in fischer2017)' in written[0].markdown
    with pytest.raises(ConfigError, match="--paper 'arnab' is not a paper"):
        make_paper_tables(results, tmp_path / 'out', 'arnab')
    with pytest.raises(ResultsError, match='does not exist'):
        make_paper_tables(tmp_path / 'nowhere', tmp_path / 'out', 'all')


def test_command_line_paper_option(tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'tools'))
    try:
        import make_leaderboard
    finally:
        sys.path.remove(str(REPO / 'tools'))
    (tmp_path / 'results').mkdir()
    assert make_leaderboard.main(['--paper', 'all', '--results-dir', str(tmp_path / 'results'),
                                  '--out-dir', str(tmp_path / 'out')]) == 0
    out = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / 'out' / 'papers').iterdir()) == sorted(
        f'{k}.{ext}' for k in PAPER_KEYS for ext in ('md', 'tex'))
    assert out.out.count('\n# ') + out.out.startswith('# ') == len(PAPER_KEYS)
    assert not (tmp_path / 'out' / 'README.md').exists()   # --paper renders nothing else


def test_papers_module_imports_no_model_code():
    code = ('import sys, leaderboard.papers; '
            'print(sorted(m for m in ("torch", "attacks", "model_zoo") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


def test_numbers_stay_numbers(arnab_table1_report):
    for s in arnab_table1_report.sections[1:]:
        for c in ('epsilon', 'published', 'ours', 'ours sd over images'):
            assert s.table[c].dtype == np.float64, (s.heading, c)
        assert list(s.table.columns) == papers.COLUMNS


def test_every_papers_latex_is_ascii_and_balanced():
    """pdflatex without unicode packages: every symbol the reports use becomes a command."""
    for report in paper_reports(pd.DataFrame()):
        body = _outside_comments(to_latex(report))
        assert not re.search(r'[^\x00-\x7f]', body), (report.key, set(re.findall(r'[^\x00-\x7f]', body)))
        plain = body.replace('\\{', '').replace('\\}', '')
        assert plain.count('{') == plain.count('}'), report.key
        assert plain.count('\\begin{') == plain.count('\\end{'), report.key


def test_a_section_displays_itself_with_the_papers_decimals():
    report = paper_reports(pd.DataFrame(), ['xiang2022'])[0]
    table, constant = section(report, 'Table 1').display()
    assert table.iloc[3].tolist()[:3] == ['FCN8-VGG', 'PGD, 20 iterations', '17.20']   # not 17.2
    assert constant == ['metric: pixel accuracy', 'unit: %', 'published in: Table 1',
                        'published dataset: Pascal VOC 2012 (split not stated)']

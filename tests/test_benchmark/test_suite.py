"""Suite validation: every user mistake fails fast with a message saying what was expected."""
import pytest

from benchmark.errors import ConfigError, DatasetError
from benchmark.suite import load_suite


def base(**kw):
    suite = dict(dataset=dict(type='synthetic_cityscapes'), models=['fcn_r18-w16_synthcity'],
                 attacks=['fgsm'], epsilons=[1, 8])
    suite.update(kw)
    return suite


def test_valid_suite_expands_to_cells():
    suite = load_suite(base(attacks=['fgsm', dict(type='IFGSM_LL')]))
    keys = suite.cells('fcn_r18-w16_synthcity')
    assert [k.attack for k in keys] == ['clean', 'fgsm', 'fgsm', 'ifgsm_ll', 'ifgsm_ll']
    assert keys[3].params == {'alpha': 1.0, 'num_steps': 2} and keys[4].params['num_steps'] == 10
    assert len({k.cell_id for k in keys}) == 5


def test_cell_ids_are_stable():
    key = load_suite(base()).cells('fcn_r18-w16_synthcity')[1]
    assert key.cell_id == load_suite(base()).cells('fcn_r18-w16_synthcity')[1].cell_id
    assert key.cell_id != load_suite(base(suite_name='other')).cells('fcn_r18-w16_synthcity')[1].cell_id


@pytest.mark.parametrize('kw,match', [
    (dict(models=['no_such_model']), "unknown model 'no_such_model'.*Known zoo models"),
    (dict(attacks=['deepfool']), "unknown attack 'deepfool'; known attacks"),
    (dict(epsilons=[0]), 'epsilon 0 is not valid'),
    (dict(epsilons=[-2]), 'epsilon -2 is not valid'),
    (dict(epsilons=['eight']), "epsilon 'eight' is not valid"),
    (dict(epsilons=[]), 'non-empty list'),
    (dict(attacks=[dict(type='ifgsm', alpha=0)]), 'alpha 0 is not valid'),
    (dict(attacks=[dict(type='fgsm', epsilon=3)]), 'put ε values in `epsilons`'),
    (dict(attacks=[dict(type='fgsm', steps=3)]), 'unexpected keyword'),
    (dict(label_source='gt'), "label_source must be 'prediction' or 'ground_truth'"),
    (dict(batch_size=0), 'batch_size must be a positive integer'),
    (dict(colour='red'), 'unknown suite field'),
    (dict(models=[dict(config='x.py')]), 'needs `name` and `config`'),
    (dict(suite_name='a/b'), 'not valid'),
])
def test_bad_suites(kw, match):
    with pytest.raises(ConfigError, match=match):
        load_suite(base(**kw))


def test_missing_suite_file(tmp_path):
    with pytest.raises(ConfigError, match='does not exist'):
        load_suite(tmp_path / 'nope.py')


def test_missing_dataset_directory_prints_layout(tmp_path):
    from benchmark.datasets.builder import build_eval_dataset
    with pytest.raises(DatasetError, match='leftImg8bit/<split>') as e:
        build_eval_dataset(dict(type='cityscapes', data_root=str(tmp_path / 'cityscapes')))
    assert 'does not exist' in str(e.value)
    (tmp_path / 'voc' / 'JPEGImages').mkdir(parents=True)
    with pytest.raises(DatasetError, match='SegmentationClass'):
        build_eval_dataset(dict(type='voc', data_root=str(tmp_path / 'voc')))
    with pytest.raises(DatasetError, match='unknown dataset type'):
        build_eval_dataset(dict(type='kitti'))


def test_attack_needing_a_target_map_is_refused():
    with pytest.raises(ConfigError, match='needs .target., e.g.'):
        load_suite(base(attacks=['targeted_ifgsm']))


def test_new_attacks_expand_into_cells():
    suite = load_suite(base(attacks=['pgd', 'mifgsm', 'segpgd', 'cospgd'], epsilons=[8]))
    assert [k.attack for k in suite.cells('fcn_r18-w16_synthcity')] == ['clean', 'pgd', 'mifgsm', 'segpgd', 'cospgd']


def test_sources_and_targets_expand_into_white_box_and_transfer_cells():
    a, b = 'fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity'
    suite = load_suite(base(models=[a, b], sources=[a, dict(model=b, scale=0.5)], targets=[a, b],
                            attacks=['fgsm'], epsilons=[8]))
    assert suite.transfer and suite.target_ids() == [a, b]
    on_a = {(k.attack, k.source_model, k.model, k.scale) for k in suite.cells(a)}
    assert on_a == {('clean', None, a, 1.0), ('fgsm', None, a, 1.0), ('fgsm', b + '.s0.5', a, 1.0)}
    on_b = {(k.attack, k.source_model) for k in suite.cells(b)}
    assert on_b == {('clean', None), ('fgsm', a), ('fgsm', b + '.s0.5')}   # b at 50 % is not b
    # the white-box cell of a transfer suite is the same cell as in a white-box suite
    plain = load_suite(base(models=[a, b], attacks=['fgsm'], epsilons=[8]))
    assert not plain.transfer
    assert [k.cell_id for k in plain.cells(a)] == [k.cell_id for k in suite.cells(a)
                                                  if k.source_model is None]
    assert {k.source_model for k in plain.cells(b)} == {None}


def test_a_scaled_target_is_its_own_row():
    a = 'fcn_r18-w16_synthcity'
    suite = load_suite(base(models=[a], sources=[dict(model=a, scale=0.5)],
                            targets=[dict(model=a, scale=0.5), a], attacks=['fgsm'], epsilons=[8]))
    scaled = suite.cells(a + '.s0.5')
    assert {(k.model, k.scale, k.source_model) for k in scaled} == {(a + '.s0.5', 0.5, None)}
    assert {k.source_model for k in suite.cells(a)} == {None, a + '.s0.5'}


@pytest.mark.parametrize('fields,message', [
    (dict(sources=['nope']), "model 'nope' is not one of the suite's models"),
    (dict(sources=[dict(model='fcn_r18-w16_synthcity', scale=0)]), 'scale'),
    (dict(targets=[]), 'targets must be a non-empty list'),
    (dict(sources=['fcn_r18-w16_synthcity', dict(model='fcn_r18-w16_synthcity')]), 'same source'),
])
def test_bad_sources_and_targets(fields, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(base(**fields))

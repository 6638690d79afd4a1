"""Generate once, evaluate everywhere: transfer cells, the white-box diagonal, and the store."""
import numpy as np
import pytest
import torch

from benchmark import metrics
from benchmark.runner import Runner
from benchmark.store import ResultStore
from benchmark.suite import load_suite


@pytest.fixture
def models(tiny_config, tiny_checkpoint, tiny_checkpoint_diverse):
    return [dict(name='tiny_a', config=str(tiny_config), checkpoint=str(tiny_checkpoint_diverse)),
            dict(name='tiny_b', config=str(tiny_config), checkpoint=str(tiny_checkpoint))]


def suite_dict(synthetic_root, models, **overrides):
    suite = dict(suite_name='transfer',
                 dataset=dict(type='synthetic_cityscapes', root=str(synthetic_root), seed=0, num_train=2,
                              num_val=4, size=(64, 32)),
                 models=models, attacks=[dict(type='fgsm'), dict(type='ifgsm')], epsilons=[2, 8],
                 batch_size=3)
    suite.update(overrides)
    return suite


def records(root):
    return {(r['key']['model'], r['key']['source_model'], r['key']['attack'], r['key']['epsilon']): r
            for _, r in ResultStore(root).iter_records()}


def test_diagonal_is_the_white_box_cell_and_transfer_is_the_source_attack_on_the_target(
        synthetic_root, models, tmp_path):
    transfer = load_suite(suite_dict(synthetic_root, models, sources=['tiny_a', 'tiny_b']))
    white = load_suite(suite_dict(synthetic_root, models))
    Runner(transfer, tmp_path / 't', progress=False, adv_dir=tmp_path / 'adv_t').run()
    Runner(white, tmp_path / 'w', progress=False, adv_dir=tmp_path / 'adv_w').run()
    t, w = records(tmp_path / 't'), records(tmp_path / 'w')
    assert len(t) == 2 * (1 + 2 * 2 * 2) and len(w) == 2 * (1 + 2 * 2)
    for key, rec in w.items():   # the diagonal is the same cell, with the same numbers
        assert t[key]['cell_id'] == rec['cell_id'] and t[key]['confusion'] == rec['confusion'], key

    # a transfer cell, independently: attack tiny_a, predict with tiny_b
    from attacks import build_attack
    from benchmark.datasets.builder import build_eval_dataset
    from model_zoo.builder import build_pixel_model
    a, _ = build_pixel_model(models[0]['config'], models[0]['checkpoint'])
    b, _ = build_pixel_model(models[1]['config'], models[1]['checkpoint'])
    dataset = build_eval_dataset(transfer.dataset)
    conf = np.zeros((19, 19), dtype=np.int64)
    for images, labels, _ in dataset.batches(3):
        torch.manual_seed(0)
        adv = build_attack({'type': 'ifgsm'}, 8)(a, images)
        conf += metrics.confusion_matrix(labels.numpy(), b.predict_labels(adv).numpy(), 19)
    rec = t[('tiny_b', 'tiny_a', 'ifgsm', 8.0)]
    np.testing.assert_array_equal(np.array(rec['confusion']['vs_ground_truth']), conf)
    # a transfer cell costs forward passes only; the generation is named, and stays with the source
    assert rec['attack_stats']['gradient_passes_per_image'] == 0
    assert rec['attack_stats']['gradient_images'] == 0
    assert rec['attack_stats']['generation']['source'] == 'tiny_a'
    assert rec['attack_stats']['generation']['gradient_passes_per_image'] == 10
    assert rec['provenance']['source']['id'] == 'tiny_a'
    assert t[('tiny_a', None, 'ifgsm', 8.0)]['attack_stats']['gradient_images'] > 0
    # the IoU ratio of a transfer cell divides by the target's clean mIoU
    assert metrics.mean_iou(conf) != pytest.approx(t[('tiny_a', None, 'clean', 0.0)]['metrics']['miou'])


def test_a_new_target_never_regenerates(synthetic_root, models, tmp_path, monkeypatch):
    adv = tmp_path / 'adv'
    first = load_suite(suite_dict(synthetic_root, models, sources=['tiny_a'], targets=['tiny_a']))
    Runner(first, tmp_path / 'r', progress=False, adv_dir=adv).run()
    stored = {p: p.stat().st_mtime_ns for p in adv.rglob('*') if p.is_file()}
    calls = []
    from attacks.base import Attack
    for name in ('run', 'run_grid'):
        original = getattr(Attack, name)
        monkeypatch.setattr(Attack, name, lambda self, *a, _o=original, **k: calls.append(1) or _o(self, *a, **k))
    second = load_suite(suite_dict(synthetic_root, models, sources=['tiny_a'], targets=['tiny_a', 'tiny_b']))
    outcomes = Runner(second, tmp_path / 'r', progress=False, adv_dir=adv).run()
    assert calls == []                                              # no attack ran
    assert {p: p.stat().st_mtime_ns for p in stored} == stored      # nothing rewritten
    computed = [o.key for o in outcomes if o.status == 'computed']
    assert {k.model for k in computed} == {'tiny_b'} and len(computed) == 1 + 4


def test_scaled_and_ensemble_sources(synthetic_root, models, tmp_path):
    suite = load_suite(suite_dict(synthetic_root, models, attacks=['fgsm'], epsilons=[8],
                                  sources=[dict(model='tiny_a', scale=0.5),
                                           dict(ensemble=['tiny_a', 'tiny_b'], weights=[1, 2])],
                                  targets=['tiny_a', dict(model='tiny_a', scale=0.5)]))
    Runner(suite, tmp_path / 'r', progress=False, adv_dir=tmp_path / 'adv').run()
    t = records(tmp_path / 'r')
    assert set(t) == {('tiny_a', None, 'clean', 0.0), ('tiny_a.s0.5', None, 'clean', 0.0),
                      ('tiny_a', 'tiny_a.s0.5', 'fgsm', 8.0), ('tiny_a.s0.5', None, 'fgsm', 8.0),
                      ('tiny_a', 'tiny_a+tiny_b.w1-2', 'fgsm', 8.0),
                      ('tiny_a.s0.5', 'tiny_a+tiny_b.w1-2', 'fgsm', 8.0)}
    assert t[('tiny_a.s0.5', None, 'fgsm', 8.0)]['key']['scale'] == 0.5
    # the white-box cell at 50 % scale: FGSM through the scale wrapper, evaluated through it
    from attacks import build_attack
    from benchmark.datasets.builder import build_eval_dataset
    from model_zoo.builder import build_pixel_model
    from model_zoo.wrappers import ScaledModel
    a, _ = build_pixel_model(models[0]['config'], models[0]['checkpoint'])
    scaled = ScaledModel(a, 0.5)
    conf = np.zeros((19, 19), dtype=np.int64)
    for images, labels, _ in build_eval_dataset(suite.dataset).batches(3):
        adv = build_attack({'type': 'fgsm'}, 8)(scaled, images)
        conf += metrics.confusion_matrix(labels.numpy(), scaled.predict_labels(adv).numpy(), 19)
    np.testing.assert_array_equal(
        np.array(t[('tiny_a.s0.5', None, 'fgsm', 8.0)]['confusion']['vs_ground_truth']), conf)

"""Runner end to end on the tiny synthetic dataset: records, resume, force, leaderboard."""
import json

import numpy as np
import pytest
import torch

from benchmark import metrics
from benchmark.errors import ResultsError
from benchmark.runner import Runner
from benchmark.store import ResultStore
from benchmark.suite import load_suite


def make_suite(synthetic_root, tiny_config, tiny_checkpoint, **overrides):
    suite = dict(
        suite_name='tiny',
        dataset=dict(type='synthetic_cityscapes', root=str(synthetic_root), seed=0, num_train=2,
                     num_val=4, size=(64, 32)),
        models=[dict(name='tiny_fcn', config=str(tiny_config), checkpoint=str(tiny_checkpoint))],
        attacks=[dict(type='fgsm'), dict(type='ifgsm_ll')],
        epsilons=[1, 4],
        batch_size=3,
    )
    suite.update(overrides)
    return load_suite(suite)


def comparable(record):
    """A record without the fields that legitimately differ between runs (time, host)."""
    record = dict(record)
    record.pop('provenance')
    record['attack_stats'] = {k: v for k, v in record['attack_stats'].items()}
    return record


@pytest.fixture
def suite(synthetic_root, tiny_config, tiny_checkpoint):
    return make_suite(synthetic_root, tiny_config, tiny_checkpoint)


def test_end_to_end_records_and_leaderboard(suite, tmp_path, tiny_config, tiny_checkpoint):
    outcomes = Runner(suite, tmp_path / 'results', progress=False).run()
    assert [o.status for o in outcomes] == ['computed'] * 5
    store = ResultStore(tmp_path / 'results')
    records = {rec['key']['attack'] + str(rec['key']['epsilon']): (p, rec) for p, rec in store.iter_records()}
    assert set(records) == {'clean0.0', 'fgsm1.0', 'fgsm4.0', 'ifgsm_ll1.0', 'ifgsm_ll4.0'}

    # clean record equals an independent evaluation of the same model on the same images
    from benchmark.datasets.builder import build_eval_dataset
    from model_zoo.builder import build_pixel_model
    model, _ = build_pixel_model(tiny_config, str(tiny_checkpoint))
    dataset = build_eval_dataset(suite.dataset)
    conf = np.zeros((19, 19), dtype=np.int64)
    for images, labels, _ in dataset.batches(4):
        conf += metrics.confusion_matrix(labels.numpy(), model.predict_labels(images).numpy(), 19)
    path, clean = records['clean0.0']
    np.testing.assert_array_equal(np.array(clean['confusion']['vs_ground_truth']), conf)
    assert clean['num_images'] == 4 and clean['metrics']['miou'] == pytest.approx(metrics.mean_iou(conf))

    for name, (path, rec) in records.items():
        per_image = store.read_per_image(path, rec)
        assert per_image['vs_ground_truth'].shape == (4, 19, 19)
        np.testing.assert_array_equal(per_image['vs_ground_truth'].sum(0), rec['confusion']['vs_ground_truth'])
        if name != 'clean0.0':
            assert rec['attack_stats']['linf_max'] <= rec['key']['epsilon'] + 1e-4
            stats = rec['attack_stats']
            assert stats['gradient_images'] == 4 * (stats['gradient_passes_per_image']
                                                    - stats.get('shared_gradient_passes_per_image', 0))
            assert rec['provenance']['checkpoint_sha256'] is not None
        assert (rec['confusion']['vs_target'] is not None) == name.startswith('ifgsm_ll')
    assert records['ifgsm_ll4.0'][1]['attack_stats']['gradient_passes_per_image'] == 5

    from leaderboard.report import load_results, make_leaderboard
    written = make_leaderboard(tmp_path / 'results', tmp_path / 'board')
    readme = (tmp_path / 'board' / 'README.md').read_text()
    assert 'tiny_fcn' in readme and 'Iterative FGSM II' in readme
    assert (tmp_path / 'board' / 'tiny_iou_ratio.png').stat().st_size > 1000
    df = load_results(tmp_path / 'results')
    row = df[(df.attack == 'fgsm') & (df.epsilon == 4)].iloc[0]
    assert row.iou_ratio == pytest.approx(row.miou / clean['metrics']['miou'])
    table = written['tables'][('tiny', suite.dataset_key)]
    assert 'FGSM ε=8' not in table.columns and 'FGSM mean' in table.columns   # ε=8 not in this grid
    assert table.loc[0, 'FGSM mean'] == pytest.approx(df[df.attack == 'fgsm'].iou_ratio.mean())


def test_resume_after_interruption_matches_uninterrupted_run(suite, tmp_path, monkeypatch):
    Runner(suite, tmp_path / 'a', progress=False, adv_dir=tmp_path / 'adv_a').run()

    calls = {'n': 0}
    original = Runner._write

    def flaky(self, *args, **kwargs):
        calls['n'] += 1
        if calls['n'] == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, '_write', flaky)
    with pytest.raises(KeyboardInterrupt):
        Runner(suite, tmp_path / 'b', progress=False).run()
    assert len(list((tmp_path / 'b').rglob('*.json'))) == 3      # clean + 2 cells survived
    assert not list((tmp_path / 'b').rglob('.*.tmp'))             # no half-written files
    monkeypatch.setattr(Runner, '_write', original)
    outcomes = Runner(suite, tmp_path / 'b', progress=False).run()
    assert [o.status for o in outcomes].count('computed') == 2

    a = {p.name: comparable(json.loads(p.read_text())) for p in (tmp_path / 'a').rglob('*.json')}
    b = {p.name: comparable(json.loads(p.read_text())) for p in (tmp_path / 'b').rglob('*.json')}
    assert a == b

    # a complete run again computes nothing and rewrites nothing
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / 'b').rglob('*.json')}
    outcomes = Runner(suite, tmp_path / 'b', progress=False).run()
    assert all(o.status == 'stored' for o in outcomes)
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / 'b').rglob('*.json')}


def test_force_recomputes(suite, tmp_path):
    Runner(suite, tmp_path, progress=False).run()
    outcomes = Runner(suite, tmp_path, progress=False, force=True).run()
    assert all(o.status == 'computed' for o in outcomes)


def test_different_image_list_is_refused(synthetic_root, tiny_config, tiny_checkpoint, tmp_path):
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=['fgsm'], epsilons=[1])
    Runner(suite, tmp_path, progress=False).run()
    record = next(tmp_path.rglob('clean_*.json'))
    data = json.loads(record.read_text())
    data['dataset']['image_ids_sha256'] = '0' * 64
    record.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match='different image list'):
        Runner(suite, tmp_path, progress=False).run()


def test_ground_truth_labels_change_cell_identity(synthetic_root, tiny_config, tiny_checkpoint, tmp_path):
    a = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=['fgsm'], epsilons=[1])
    b = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=['fgsm'], epsilons=[1],
                   label_source='ground_truth')
    assert {k.cell_id for k in a.cells('tiny_fcn')}.isdisjoint({k.cell_id for k in b.cells('tiny_fcn')})


def test_shared_trajectories_give_identical_records_with_fewer_gradient_passes(
        synthetic_root, tiny_config, tiny_checkpoint_diverse, tmp_path):
    """Iterative FGSM cells of one entry share their first steps across the ε grid."""
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint_diverse,
                       attacks=[dict(type='ifgsm'), dict(type='ifgsm_ll')], epsilons=[0.5, 1, 2, 4, 8])
    Runner(suite, tmp_path / 'alone', progress=False, share_trajectories=False,
           adv_dir=tmp_path / 'adv_alone').run()
    Runner(suite, tmp_path / 'shared', progress=False, adv_dir=tmp_path / 'adv_shared').run()
    alone = {r['cell_id']: r for _, r in ResultStore(tmp_path / 'alone').iter_records()}
    shared = {r['cell_id']: r for _, r in ResultStore(tmp_path / 'shared').iter_records()}
    assert alone.keys() == shared.keys() and len(alone) == 11
    for cell_id, rec in alone.items():
        assert rec['confusion'] == shared[cell_id]['confusion'], rec['key']
        assert rec['attack_stats']['linf_max'] == shared[cell_id]['attack_stats']['linf_max']
    # attack cells (the clean cell's one backward pass is the input-gradient diagnostic)
    total = lambda recs: sum(r['attack_stats']['gradient_images'] for r in recs.values()  # noqa: E731
                             if r['key']['attack'] != 'clean')
    # alone: 4 images × (1 + 2 + 3 + 5 + 10) steps per attack. Shared (integer images, α = 1): ε = 8
    # leads with 10 steps; ε = 4, 2, 1 continue after 4, 2, 1 of its steps and their first own
    # step uses the gradient ε = 8 took at that iterate, as ε = 0.5 uses its gradient at the clean
    # image: each smaller ε's last step is the only one left and it is shared, so 10 in all
    assert total(alone) == 2 * 4 * (1 + 2 + 3 + 5 + 10)
    assert total(shared) == 2 * 4 * 10
    eps4 = [r for r in shared.values() if r['key']['attack'] == 'ifgsm' and r['key']['epsilon'] == 4][0]
    assert eps4['attack_stats']['shared_gradient_passes_per_image'] == 5
    assert eps4['attack_stats']['gradient_passes_per_image'] == 5


def test_jobs_is_refused_with_the_torchrun_command(synthetic_root, tiny_config, tiny_checkpoint):
    from benchmark.errors import ConfigError
    with pytest.raises(ConfigError, match='no longer a suite field.*torchrun --nproc-per-node N'):
        make_suite(synthetic_root, tiny_config, tiny_checkpoint, jobs=2)


def test_arnab_grid_costs_80_gradient_passes_per_image_and_matches_attacks_run_alone(
        synthetic_root, tiny_config, tiny_checkpoint_diverse, tmp_path):
    """The four attacks of Arnab et al. over ε ∈ {0.25, ..., 32}: the runner passes one
    SharedGradients per batch to all four entries, so FGSM (II) take Iterative FGSM (II)'s first
    gradient and every smaller ε branches off the ε = 32 trajectory: 40 + 40 passes per image, the
    records bit-identical to every attack and ε run alone (172 passes per image)."""
    from benchmark.suite import ARNAB_EPSILONS
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint_diverse, epsilons=list(ARNAB_EPSILONS),
                       attacks=['fgsm', 'fgsm_ll', 'ifgsm', 'ifgsm_ll'], batch_size=2,
                       dataset=dict(type='synthetic_cityscapes', root=str(synthetic_root), seed=0,
                                    num_train=2, num_val=4, size=(64, 32), num_images=2))
    Runner(suite, tmp_path / 'alone', progress=False, share_trajectories=False,
           adv_dir=tmp_path / 'adv_alone').run()
    Runner(suite, tmp_path / 'shared', progress=False, adv_dir=tmp_path / 'adv_shared').run()
    alone = {r['cell_id']: r for _, r in ResultStore(tmp_path / 'alone').iter_records()}
    shared = {r['cell_id']: r for _, r in ResultStore(tmp_path / 'shared').iter_records()}
    assert alone.keys() == shared.keys() and len(alone) == 1 + 4 * 8
    for cell_id, rec in alone.items():
        assert rec['confusion'] == shared[cell_id]['confusion'], rec['key']
        assert rec['attack_stats']['gradient_passes_per_image'] == \
            shared[cell_id]['attack_stats']['gradient_passes_per_image']
    per_image = lambda recs: sum(r['attack_stats']['gradient_images'] for r in recs.values()  # noqa: E731
                                 if r['key']['attack'] != 'clean') / 2
    assert per_image(alone) == 2 * 8 + 2 * (1 + 1 + 2 + 3 + 5 + 10 + 20 + 36) == 172
    assert per_image(shared) == 80
    own = sum(r['attack_stats']['gradient_passes_per_image']
              - r['attack_stats'].get('shared_gradient_passes_per_image', 0) for r in shared.values())
    assert own == 80
    clean = next(r for r in shared.values() if r['key']['attack'] == 'clean')
    assert clean['attack_stats']['gradient_images'] == 2          # the input-gradient diagnostic
    assert 0 <= clean['attack_stats']['input_gradient']['zero_fraction_mean'] < 1
    fgsm = next(r for r in shared.values() if r['key']['attack'] == 'fgsm')
    assert fgsm['provenance']['attack_display_name'] == 'FGSM'
    # a user model (no zoo description): the config's module types and the parameters at inference
    assert fgsm['provenance']['model_info']['architecture'] == 'FCNHead'
    assert fgsm['provenance']['model_info']['backbone'] == 'ResNetV1c 18'
    assert fgsm['provenance']['model_info']['parameters'] > 0


def test_panels_keep_the_fixed_images_of_one_epsilon_per_entry(suite, tmp_path):
    """The qualitative panels' data: images 0 and 1 at the ε nearest 8 of each entry (4 here),
    exact (the perturbation is integer-valued for these attacks: int8), named by the record and
    checked by the validator."""
    from benchmark.integrity import check_paths
    Runner(suite, tmp_path, progress=False).run()
    store = ResultStore(tmp_path)
    records = {(r['key']['attack'], r['key']['epsilon']): (p, r) for p, r in store.iter_records()}
    assert {k for k, (_, r) in records.items() if 'panel' in r['provenance']} == {('fgsm', 4.0),
                                                                                 ('ifgsm_ll', 4.0)}
    path, rec = records[('fgsm', 4.0)]
    panel = tmp_path / rec['provenance']['panel']['path']
    with np.load(panel) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays['image'].shape == (2, 3, 32, 64) and arrays['image'].dtype == np.uint8
    assert arrays['delta'].dtype == np.int8 and np.abs(arrays['delta']).max() <= 4
    adv = np.clip(arrays['image'].astype(np.float32) + arrays['delta'], 0, 255)
    assert adv.min() >= 0 and adv.max() <= 255
    assert arrays['adv_pred'].shape == arrays['clean_pred'].shape == arrays['ground_truth'].shape == (2, 32, 64)
    # the adversarial prediction kept is the one the record counts: the image's matrix row sums
    per_image = store.read_per_image(path, rec)['vs_ground_truth']
    for i in range(2):
        gt, pred = arrays['ground_truth'][i].astype(np.int64), arrays['adv_pred'][i].astype(np.int64)
        valid = gt != 255
        np.testing.assert_array_equal(per_image[i], metrics.confusion_matrix(gt[valid], pred[valid], 19))
    assert check_paths([tmp_path]) == []
    panel.write_bytes(panel.read_bytes()[:-3] + b'xyz')
    assert [p.field for p in check_paths([tmp_path])] == ['provenance.panel']


def test_out_of_memory_says_which_batch_size_to_try(suite, tmp_path, monkeypatch):
    from benchmark.errors import BenchmarkError

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

    monkeypatch.setattr(Runner, '_generate_batch', oom)
    with pytest.raises(BenchmarkError, match=r'out of memory .* batches of 3 images .* --batch-size \(e.g. 1\)'):
        Runner(suite, tmp_path, progress=False).run()

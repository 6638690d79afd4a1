"""Runner: target maps and masks from suites, attacks fitted on a training split, per-image info."""
import numpy as np
import pytest
import torch

from attacks.base import ATTACKS, Attack, AttackResult, project, register_attack
from attacks.fitted import FittedAttack, read_artifact_metadata
from attacks.targeted import TargetedIterativeFGSM
from attacks.targets import hidden_class_mask, hide_class_target
from benchmark import metrics
from benchmark.errors import ConfigError
from benchmark.runner import Runner
from benchmark.store import ResultStore, sha256_file
from benchmark.suite import load_suite

from .test_runner import make_suite


class MeanSignUniversal(FittedAttack):
    """Test double: ε · sign of the loss gradient summed over the fitting images (one step)."""

    name = 'test_mean_sign_universal'
    fit_calls = 0

    def __init__(self, epsilon):
        super().__init__(epsilon)
        self.delta = None

    @property
    def fitted(self):
        return self.delta is not None

    def gradient_passes(self):
        return 0

    def fit(self, model, batches, progress=False):
        type(self).fit_calls += 1
        total = None
        for images, labels, target in batches():
            x = images.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(x), labels, ignore_index=255, reduction='sum')
            g, = torch.autograd.grad(loss, x)
            total = g.sum(0) if total is None else total + g.sum(0)
        self.delta = self.epsilon * total.sign()
        self.fit_info = {'images': 2}
        return self

    def state_dict(self):
        return {'delta': self.delta}

    def load_state_dict(self, state):
        self.delta = state['delta']

    def perturb(self, model, images, labels, target, mask):
        self.check_fitted()
        return project(images + self.delta, images, self.epsilon, mask)


class QueryCounting(Attack):
    """Test double reporting a per-image statistic."""

    name = 'test_query_counting'

    def gradient_passes(self):
        return 0

    def perturb(self, model, images, labels, target, mask):
        n = len(images)
        return AttackResult(images.clone(), {'queries': torch.arange(n) + 10})


for cls in (MeanSignUniversal, QueryCounting):
    if cls.name not in ATTACKS:
        register_attack(cls)


@pytest.fixture
def fit_dataset(synthetic_root):
    return dict(type='synthetic_cityscapes', root=str(synthetic_root), seed=0, num_train=2, num_val=4,
                size=(64, 32), split='train')


def _clean_preds(suite, tiny_config, tiny_checkpoint):
    from benchmark.datasets.builder import build_eval_dataset
    from model_zoo.builder import build_pixel_model
    model, _ = build_pixel_model(tiny_config, str(tiny_checkpoint))
    dataset = build_eval_dataset(suite.dataset)
    images, labels, _ = next(dataset.batches(len(dataset)))
    return model, images, labels, model.predict_labels(images)


def test_hide_class_target_and_mask_match_a_direct_attack(synthetic_root, tiny_config,
                                                          tiny_checkpoint_diverse, tmp_path):
    tiny_checkpoint = tiny_checkpoint_diverse
    base = make_suite(synthetic_root, tiny_config, tiny_checkpoint)
    model, images, labels, clean = _clean_preds(base, tiny_config, tiny_checkpoint)
    counts = torch.bincount(clean.flatten(), minlength=19)
    hidden = int(counts.argsort()[-2])        # a class the model predicts, but not everywhere
    assert 0 < counts[hidden] < clean.numel() / 2
    spec = dict(type='targeted_ifgsm', num_steps=3, omega=0.9999,
                target=dict(kind='hide_class', hidden_class=hidden), mask='hidden_class')
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[spec], epsilons=[8],
                       batch_size=4)
    Runner(suite, tmp_path, progress=False).run()
    store = ResultStore(tmp_path)
    (path, rec), = [(p, r) for p, r in store.iter_records() if r['key']['attack'] == 'targeted_ifgsm']
    assert rec['key']['params']['target'] == {'kind': 'hide_class', 'hidden_class': hidden}
    assert rec['key']['params']['mask'] == 'hidden_class'

    target = hide_class_target(clean, hidden)
    mask = hidden_class_mask(clean, hidden)
    adv = TargetedIterativeFGSM(8, num_steps=3, omega=0.9999)(model, images, target=target, mask=mask)
    assert float(((adv - images).abs().amax(1) * ~mask).max()) == 0.0       # the mask held
    assert float((adv - images).abs().max()) > 0
    adv_pred = model.predict_labels(adv).numpy()
    np.testing.assert_array_equal(rec['confusion']['vs_target'],
                                  metrics.confusion_matrix(target.numpy(), adv_pred, 19))
    conf_clean = metrics.confusion_matrix(clean.numpy(), adv_pred, 19)
    np.testing.assert_array_equal(rec['confusion']['vs_clean'], conf_clean)
    hidden_total = conf_clean[hidden].sum()
    assert rec['metrics']['class_pixels_hidden'] == pytest.approx(1 - conf_clean[hidden, hidden] / hidden_total)
    keep = np.arange(19) != hidden
    assert rec['metrics']['background_preserved'] == pytest.approx(
        np.diag(conf_clean)[keep].sum() / conf_clean[keep].sum())
    assert 0 < rec['metrics']['class_pixels_hidden'] and 0 < rec['metrics']['background_preserved'] < 1
    assert rec['metrics']['targeted_success_rate'] == pytest.approx(
        np.trace(rec['confusion']['vs_target']) / np.sum(rec['confusion']['vs_target']))

    # ω weighs the pixels predicted as the hidden class on the clean image (Metzen's I_o), also
    # when the suite's untargeted attacks use the ground truth
    gt_suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[spec], epsilons=[8],
                          batch_size=4, label_source='ground_truth')
    Runner(gt_suite, tmp_path / 'gt', progress=False).run()
    rec_gt, = [r for _, r in ResultStore(tmp_path / 'gt').iter_records() if r['key']['attack'] == 'targeted_ifgsm']
    np.testing.assert_array_equal(rec_gt['confusion']['vs_target'], rec['confusion']['vs_target'])


def test_static_target_is_the_ground_truth_of_the_chosen_image(synthetic_root, tiny_config,
                                                                tiny_checkpoint, tmp_path, fit_dataset):
    spec = dict(type='pgd', num_steps=2, target=dict(kind='static', split='train', index=1))
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[spec], epsilons=[4])
    Runner(suite, tmp_path, progress=False).run()
    (_, rec), = [(p, r) for p, r in ResultStore(tmp_path).iter_records() if r['key']['attack'] == 'pgd']
    from benchmark.datasets.builder import build_eval_dataset
    gt = build_eval_dataset(fit_dataset)[1][1]
    # every image's target is that map: the vs_target matrix's row sums are 4 × its class histogram
    rows = np.asarray(rec['confusion']['vs_target']).sum(1)
    hist = np.bincount(gt[gt != 255].numpy(), minlength=19)
    np.testing.assert_array_equal(rows, 4 * hist)
    assert rec['key']['params']['target'] == {'kind': 'static', 'split': 'train', 'index': 1,
                                              'source': 'ground_truth'}


def test_fitted_attack_is_fitted_once_stored_and_evaluated_on_both_splits(
        synthetic_root, tiny_config, tiny_checkpoint, tmp_path, fit_dataset):
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, epsilons=[4],
                       attacks=[dict(type='test_mean_sign_universal')], fit_dataset=fit_dataset)
    MeanSignUniversal.fit_calls = 0
    outcomes = Runner(suite, tmp_path, progress=False).run()
    assert MeanSignUniversal.fit_calls == 1
    records = {(r['key']['dataset'], r['key']['attack']): (p, r) for p, r in ResultStore(tmp_path).iter_records()}
    fit_key, eval_key = suite.fit_dataset_key, suite.dataset_key
    assert set(records) == {(eval_key, 'clean'), (eval_key, 'test_mean_sign_universal'),
                            (fit_key, 'clean'), (fit_key, 'test_mean_sign_universal')}
    assert len(outcomes) == 4
    _, rec = records[(eval_key, 'test_mean_sign_universal')]
    artifact = tmp_path / rec['provenance']['artifact']['path']
    assert sha256_file(artifact) == rec['provenance']['artifact']['sha256']
    meta = read_artifact_metadata(artifact)
    assert meta['epsilon'] == 4 and meta['run']['model'] == 'tiny_fcn'
    assert records[(fit_key, 'test_mean_sign_universal')][1]['num_images'] == 2
    assert rec['num_images'] == 4

    # the stored perturbation is what the record was computed with
    model, images, labels, clean = _clean_preds(suite, tiny_config, tiny_checkpoint)
    delta = torch.load(artifact, weights_only=True)['state']['delta']
    adv_pred = model.predict_labels((images + delta).clamp(0, 255)).numpy()
    np.testing.assert_array_equal(rec['confusion']['vs_ground_truth'],
                                  metrics.confusion_matrix(labels.numpy(), adv_pred, 19))

    # a new run reuses records; deleting an eval record re-evaluates with the stored artifact
    (tmp_path / records[(eval_key, 'test_mean_sign_universal')][0]).unlink()
    MeanSignUniversal.fit_calls = 0
    again = Runner(suite, tmp_path, progress=False).run()
    assert MeanSignUniversal.fit_calls == 0
    assert sorted(o.status for o in again) == ['computed', 'stored', 'stored', 'stored']
    Runner(suite, tmp_path, progress=False, force=True).run()
    assert MeanSignUniversal.fit_calls == 1


def test_fitted_attack_needs_a_distinct_fit_dataset(synthetic_root, tiny_config, tiny_checkpoint, fit_dataset):
    with pytest.raises(ConfigError, match='fit_dataset'):
        make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[dict(type='test_mean_sign_universal')])
    same = dict(fit_dataset, split='val')
    with pytest.raises(ConfigError, match='same as dataset'):
        make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[dict(type='test_mean_sign_universal')],
                   fit_dataset=same)
    with pytest.raises(ConfigError, match='no attack needs fitting'):
        make_suite(synthetic_root, tiny_config, tiny_checkpoint, fit_dataset=fit_dataset)


@pytest.mark.parametrize('spec, match', [
    (dict(type='fgsm', target=dict(kind='hide_class', hidden_class=11)), 'untargeted and takes no'),
    (dict(type='targeted_ifgsm', target=dict(kind='hide', hidden_class=11)), 'kind in'),
    (dict(type='targeted_ifgsm', target=dict(kind='hide_class')), 'needs hidden_class'),
    (dict(type='targeted_ifgsm', target=dict(kind='static', index=-1)), 'index'),
    (dict(type='targeted_ifgsm', target=dict(kind='static'), mask='hidden_class'), "needs target=dict"),
    (dict(type='targeted_ifgsm', target=dict(kind='hide_class', hidden_class=1), mask='box'), 'mask must be'),
])
def test_bad_target_specs_are_refused(synthetic_root, tiny_config, tiny_checkpoint, spec, match):
    with pytest.raises(ConfigError, match=match):
        make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[spec])


def test_per_image_info_is_recorded(synthetic_root, tiny_config, tiny_checkpoint, tmp_path):
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=['test_query_counting'],
                       epsilons=[1], batch_size=3)
    Runner(suite, tmp_path, progress=False).run()
    store = ResultStore(tmp_path)
    (path, rec), = [(p, r) for p, r in store.iter_records() if r['key']['attack'] == 'test_query_counting']
    # batches of 3 and 1 images: queries 10, 11, 12 and 10
    assert rec['attack_stats']['per_image_info']['queries'] == {'mean': 10.75, 'min': 10.0, 'max': 12.0}
    np.testing.assert_array_equal(store.read_per_image(path, rec)['info_queries'], [10, 11, 12, 10])


def test_target_specs_do_not_change_existing_cell_ids(synthetic_root, tiny_config, tiny_checkpoint):
    plain = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[dict(type='pgd')])
    targeted = make_suite(synthetic_root, tiny_config, tiny_checkpoint,
                          attacks=[dict(type='pgd', target=dict(kind='hide_class', hidden_class=11))])
    assert plain.cells('tiny_fcn')[1].params == load_suite(dict(
        suite_name='tiny', dataset=plain.dataset, models=[dict(name='tiny_fcn', config=str(tiny_config),
                                                               checkpoint=str(tiny_checkpoint))],
        attacks=['pgd'], epsilons=[1, 4])).cells('tiny_fcn')[1].params
    assert plain.cells('tiny_fcn')[1].cell_id != targeted.cells('tiny_fcn')[1].cell_id


def test_posthoc_mask_restricts_the_full_image_perturbation(synthetic_root, tiny_config,
                                                            tiny_checkpoint_diverse, tmp_path):
    """Fischer et al.: the perturbation is computed on the whole image, then kept on the class only."""
    tiny_checkpoint = tiny_checkpoint_diverse
    base = make_suite(synthetic_root, tiny_config, tiny_checkpoint)
    model, images, labels, clean = _clean_preds(base, tiny_config, tiny_checkpoint)
    hidden = int(torch.bincount(clean.flatten(), minlength=19).argsort()[-2])
    spec = dict(type='targeted_ifgsm', num_steps=3, target=dict(kind='hide_class', hidden_class=hidden),
                mask='hidden_class_posthoc')
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[spec], epsilons=[8], batch_size=4)
    Runner(suite, tmp_path, progress=False).run()
    (_, rec), = [(p, r) for p, r in ResultStore(tmp_path).iter_records() if r['key']['attack'] == 'targeted_ifgsm']
    target = hide_class_target(clean, hidden)
    mask = hidden_class_mask(clean, hidden)
    full = TargetedIterativeFGSM(8, num_steps=3)(model, images, target=target)
    adv = images + (full - images) * mask[:, None]
    expected = metrics.confusion_matrix(target.numpy(), model.predict_labels(adv).numpy(), 19)
    np.testing.assert_array_equal(rec['confusion']['vs_target'], expected)
    optimised_in_mask = TargetedIterativeFGSM(8, num_steps=3)(model, images, target=target, mask=mask)
    assert not torch.equal(optimised_in_mask, adv)      # the two mask protocols differ


def test_per_attack_epsilons(synthetic_root, tiny_config, tiny_checkpoint):
    suite = make_suite(synthetic_root, tiny_config, tiny_checkpoint, epsilons=[1, 4],
                       attacks=['fgsm', dict(type='pgd', num_steps=2, epsilons=[8])])
    assert [(k.attack, k.epsilon) for k in suite.cells('tiny_fcn')] == [
        ('clean', 0.0), ('fgsm', 1.0), ('fgsm', 4.0), ('pgd', 8.0)]
    with pytest.raises(ConfigError, match='epsilon'):
        make_suite(synthetic_root, tiny_config, tiny_checkpoint, attacks=[dict(type='pgd', epsilons=[0])])

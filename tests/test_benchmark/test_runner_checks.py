"""Mistakes caught before any model is built, and models whose numbers would mean nothing."""
import numpy as np
import pytest
import torch
from torch import nn

from benchmark.errors import ConfigError, ModelError, ResultsError
from benchmark.runner import Runner
from benchmark.suite import load_suite
from model_zoo.pixel_model import PixelSpaceModel


def suite_dict(synthetic_root, tiny_config, tiny_checkpoint, **overrides):
    suite = dict(
        suite_name='checks',
        dataset=dict(type='synthetic_cityscapes', root=str(synthetic_root), seed=0, num_train=2,
                     num_val=4, size=(64, 32)),
        models=[dict(name='tiny_fcn', config=str(tiny_config), checkpoint=str(tiny_checkpoint))],
        attacks=[dict(type='fgsm')],
        epsilons=[1, 4],
        batch_size=2,
    )
    suite.update(overrides)
    return suite


@pytest.fixture
def make(synthetic_root, tiny_config, tiny_checkpoint):
    return lambda **kw: suite_dict(synthetic_root, tiny_config, tiny_checkpoint, **kw)


# -- the suite ---------------------------------------------------------------------------------
@pytest.mark.parametrize('overrides,message', [
    (dict(epsilons=[1, 2, 2]), 'lists ε = 2 more than once'),
    (dict(epsilons=[8, 8.0]), 'lists ε = 8 more than once'),
    (dict(attacks=[dict(type='fgsm', epsilons=[4, 4])]), 'lists ε = 4 more than once'),
    (dict(epsilons=[8 / 255]), 'looks like 8/255'),
    (dict(epsilons=[4 / 255, 8 / 255]), 'write 4 for 4/255'),
    (dict(epsilons=[300]), 'larger than the whole 0-255 pixel range'),
    (dict(epsilons=[float('nan')]), 'epsilon nan is not valid'),
    (dict(epsilons=[True]), 'epsilon True is not valid'),
    (dict(epsilons=[]), 'non-empty list'),
    (dict(attacks=[dict(type='fgsm'), 'fgsm']), 'both describe the cell fgsm'),
    (dict(attacks=[]), 'attacks must be a non-empty list'),
    (dict(attacks=[3]), "must be a name such as 'fgsm'"),
    (dict(dataset='cityscapes'), 'dataset must be a dict'),
])
def test_bad_suites_fail_at_load(make, overrides, message):
    with pytest.raises(ConfigError) as e:
        load_suite(make(**overrides))
    assert message in str(e.value)


def test_arnab_grid_and_single_attack_name_are_accepted(make):
    suite = load_suite(make(attacks='fgsm', epsilons=[0.25, 0.5, 1, 2, 4, 8, 16, 32]))
    assert [a['type'] for a in suite.attacks] == ['fgsm'] and len(suite.epsilons) == 8


# -- the runner, before any model is built -----------------------------------------------------
@pytest.fixture
def no_model_build(monkeypatch):
    """Fail the test if the runner gets as far as building a model."""
    import model_zoo.zoo

    def refuse(*a, **k):
        raise AssertionError('a model was built before the input was checked')
    monkeypatch.setattr(model_zoo.zoo, 'build_zoo_model', refuse)


@pytest.mark.parametrize('target,message', [
    (dict(kind='hide_class', hidden_class=19), 'hidden_class 19 is not a class'),
    (dict(kind='hide_class', hidden_class=200), 'ids are 0-18'),
    (dict(kind='static', split='train', index=2), 'index 2 is out of range'),
    (dict(kind='static', split='nosuchsplit', index=0), 'nosuchsplit'),
])
def test_target_errors_before_any_model(make, tmp_path, no_model_build, target, message):
    suite = load_suite(make(attacks=[dict(type='targeted_ifgsm', target=target)]))
    with pytest.raises((ConfigError, Exception)) as e:
        Runner(suite, tmp_path / 'r', progress=False).run()
    assert not isinstance(e.value, AssertionError), e.value
    assert message in str(e.value)


def test_missing_checkpoint_of_a_later_model_fails_before_the_first_is_built(make, tmp_path, tiny_config,
                                                                              no_model_build):
    models = make()['models'] + [dict(name='second', config=str(tiny_config),
                                      checkpoint=str(tmp_path / 'nope.pth'))]
    suite = load_suite(make(models=models))
    with pytest.raises(Exception) as e:
        Runner(suite, tmp_path / 'r', progress=False).run()
    assert not isinstance(e.value, AssertionError), e.value
    assert 'model second' in str(e.value) and 'nope.pth' in str(e.value)


@pytest.mark.parametrize('device,message', [('mps', 'only cpu and cuda'), ('tpu', 'not a torch device'),
                                            ('gpu0', 'not a torch device'),
                                            ('cuda', 'asks for a GPU')])
def test_bad_device(make, tmp_path, device, message):
    if device == 'cuda' and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    with pytest.raises(ConfigError) as e:
        Runner(load_suite(make()), tmp_path / 'r', device=device)
    assert message in str(e.value)


def test_results_dir_that_is_a_file(make, tmp_path, no_model_build):
    (tmp_path / 'r').write_text('x')
    with pytest.raises(ResultsError, match='is a file'):
        Runner(load_suite(make()), tmp_path / 'r', progress=False).run()
    assert (tmp_path / 'r').read_text() == 'x'


# -- models whose numbers would mean nothing -----------------------------------------------------
def test_model_with_nan_logits_stops_the_run_naming_it(make, tmp_path, tiny_checkpoint):
    """Finite but broken weights (a negative BN variance) give NaN logits: no record is written."""
    state = torch.load(tiny_checkpoint, weights_only=True)
    key = next(k for k in state if k.endswith('running_var'))
    state[key] = -torch.ones_like(state[key])
    bad = tmp_path / 'broken.pth'
    torch.save(state, bad)
    models = [dict(name='broken_bn', config=make()['models'][0]['config'], checkpoint=str(bad))]
    with pytest.raises(ModelError) as e:
        Runner(load_suite(make(models=models)), tmp_path / 'r', progress=False).run()
    assert "model 'broken_bn' produced non-finite logits" in str(e.value)
    assert not list((tmp_path / 'r').rglob('*.json'))


class _SqrtAtZero(nn.Module):
    """Finite logits whose input gradient is NaN (d sqrt(u)/du at u = 0 is infinite, times 0)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x, mode='tensor'):
        return self.conv(x) + torch.sqrt((x - x.detach()).abs()).sum(1, keepdim=True)


def test_non_finite_input_gradient_is_refused():
    from attacks.fgsm import FGSM
    model = PixelSpaceModel(_SqrtAtZero(), num_classes=4)
    model.name = 'sqrt_model'
    images = torch.rand(1, 3, 8, 8) * 255
    assert torch.isfinite(model(images)).all()
    with pytest.raises(ModelError, match="model 'sqrt_model' produced a non-finite input gradient"):
        FGSM(epsilon=4)(model, images)


def test_clean_cell_records_the_confidence_of_the_prediction(make, tmp_path):
    """Arnab et al. Sec. 7.1 compare mean top-class probability and entropy of clean predictions."""
    from benchmark.datasets.builder import build_eval_dataset
    from benchmark.integrity import check_paths
    from benchmark.store import ResultStore
    from model_zoo.builder import build_pixel_model
    suite = load_suite(make())
    Runner(suite, tmp_path / 'r', progress=False).run()
    store = ResultStore(tmp_path / 'r')
    path, rec = next((p, r) for p, r in store.iter_records() if r['key']['attack'] == 'clean')
    conf = rec['attack_stats']['prediction_confidence']
    per_image = store.read_per_image(path, rec)
    # independent: softmax of the model's logits, image by image
    entry = suite.models[0]
    model, _ = build_pixel_model(entry.config, entry.weights)
    tops, ents = [], []
    for image, _, _ in build_eval_dataset(suite.dataset):
        p = torch.softmax(model(image[None]).double(), 1)[0]
        tops.append(float(p.max(0).values.mean()))
        ents.append(float(-(p * p.log()).sum(0).mean()))
    assert per_image['info_top_probability'] == pytest.approx(tops, rel=1e-6)
    assert per_image['info_entropy_nats'] == pytest.approx(ents, rel=1e-6)
    assert conf['mean_top_probability'] == pytest.approx(sum(tops) / len(tops), rel=1e-6)
    assert 0 < conf['mean_top_probability'] <= 1 and 0 <= conf['mean_entropy_nats'] <= np.log(19)
    assert check_paths([tmp_path / 'r']) == []


class _Constant(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x, mode='tensor'):
        return torch.full((x.shape[0], 3, x.shape[2], x.shape[3]), self.value) + 0 * x[:, :1]


def test_finite_check_is_exact():
    """Huge but finite logits (their sum overflows) pass; one NaN does not."""
    images = torch.rand(1, 3, 8, 8) * 255
    assert torch.isinf(PixelSpaceModel(_Constant(3e38), num_classes=3)(images).sum())
    with pytest.raises(ModelError, match='non-finite logits'):
        PixelSpaceModel(_Constant(float('nan')), num_classes=3)(images)
    with pytest.raises(ModelError, match='non-finite logits'):
        PixelSpaceModel(_Constant(float('inf')), num_classes=3)(images)

"""Source wrappers (model_zoo/wrappers.py): a model at a scale, an ensemble attacked on the weighted
sum of its members' losses, a CRF-RNN's unaries, and the suite's source specs and ids."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import model_zoo.models.crf_rnn  # noqa: F401  (registers CRFRNN)
import model_zoo.models.deeplabv2  # noqa: F401  (registers ASPPV2Head)
import model_zoo.models.multiscale  # noqa: F401  (registers MultiScaleEncoderDecoder)
from common.errors import ConfigError
from common.names import check_name
from model_zoo import PixelSpaceModel
from model_zoo.builder import build_segmentor
from model_zoo.wrappers import (EnsembleLogits, EnsembleModel, ScaledModel, build_source_model,
                                check_source_spec, check_sources, ensemble_pixel_cross_entropy,
                                member_weighted, part_of, single_scale_of, source_id, unaries_of)

DEEPLAB = Path(__file__).resolve().parents[2] / 'model_zoo' / 'configs' / 'deeplabv2'
MSC = DEEPLAB / 'deeplabv2-aspp-msc_r18-w16-d8_1.5k_synthcity-256x128.py'


def images(n=2, h=26, w=34, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, h, w), generator=g) * 255


@pytest.fixture(scope='module')
def tiny_fcn(tmp_path_factory):
    """The tiny mmseg FCN of conftest with a diverse classifier (several classes per image)."""
    from conftest import write_tiny_config
    torch.manual_seed(0)
    seg = build_segmentor(write_tiny_config(tmp_path_factory.mktemp('fcn') / 'tiny.py', 5))
    with torch.no_grad():
        seg.decode_head.conv_seg.weight.mul_(20)
    model = PixelSpaceModel.from_segmentor(seg)
    model.name = 'tiny'
    return model


class Toy(nn.Module):
    """Pixel-space toy model (conftest's ToySegmenter) with a num_classes attribute."""

    def __init__(self, seed):
        super().__init__()
        from conftest import ToySegmenter
        self.net = ToySegmenter(num_classes=5, seed=seed)
        self.num_classes = 5
        self.forward_images = 0

    def forward(self, x):
        self.forward_images += len(x)
        return self.net(x)


# -- ScaledModel -------------------------------------------------------------------------------
def test_scaled_model_equals_explicit_resize_model_resize(tiny_fcn):
    """Full-size logits, equal to resize -> model -> resize written out by hand (bit for bit)."""
    x = images()
    half = ScaledModel(tiny_fcn, 0.5)
    assert half.align_corners is False and half.scaled_size(26, 34) == (13, 17)
    with torch.no_grad():
        out = half(x)
        small = F.interpolate(x, size=(13, 17), mode='bilinear', align_corners=False)
        expected = F.interpolate(tiny_fcn(small), size=(26, 34), mode='bilinear', align_corners=False)
        assert out.shape == (2, 5, 26, 34)
        assert torch.equal(out, expected)
        assert not torch.allclose(out, tiny_fcn(x), atol=1e-3)   # the scale does change the logits


def test_scaled_model_at_scale_one_is_the_model(tiny_fcn):
    x = images(h=25, w=31)
    with torch.no_grad():
        assert torch.equal(ScaledModel(tiny_fcn, 1)(x), tiny_fcn(x))


@pytest.mark.parametrize('scale', [0.5, 1.5])
def test_scaled_model_gradient_reaches_the_full_size_input(tiny_fcn, scale):
    x = images(n=1).requires_grad_(True)
    model = ScaledModel(tiny_fcn, scale)
    logits = model(x)
    assert logits.shape == (1, 5, 26, 34)
    F.cross_entropy(logits, logits.detach().argmin(1), reduction='sum').backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()
    assert (x.grad != 0).float().mean() > 0.5   # every input pixel feeds the resized image
    assert model.forward_images == 1 and model.gradient_images == 1


def test_scaled_model_counts_like_pixel_space_model(tiny_fcn):
    model = ScaledModel(tiny_fcn, 0.75)
    with torch.no_grad():
        model(images(n=3))
    model(images(n=2).requires_grad_(True))
    assert model.forward_images == 5 and model.gradient_images == 2
    model.train()
    assert not model.training and not tiny_fcn.segmentor.training


@pytest.mark.parametrize('scale', [0, -0.5, 4.5, float('nan'), True, '0.5'])
def test_scaled_model_refuses_bad_scales(tiny_fcn, scale):
    with pytest.raises(ValueError, match=r'scale must be a number in \(0, 4\]'):
        ScaledModel(tiny_fcn, scale)


@pytest.fixture(scope='module')
def msc_pair():
    """The multiscale demo DeepLab v2 (random weights) and the same weights tested at 50 % only."""
    torch.manual_seed(0)
    msc = build_segmentor(MSC)
    s50 = build_segmentor(DEEPLAB / (MSC.stem + '_test-s50.py'))
    s50.load_state_dict(msc.state_dict())
    return PixelSpaceModel.from_segmentor(msc), PixelSpaceModel.from_segmentor(s50)


def test_scale_of_a_multiscale_model_runs_its_single_branch(msc_pair):
    """dict(model=MSC, scale=0.5) is Arnab et al.'s "Deeplab v2 50% scale": the multiscale-trained
    network with one branch on the half-size image; exactly the plain network run on the resized
    image, and the zoo's test_scales=(0.5,) model up to how the scores are upsampled."""
    msc, s50 = msc_pair
    x = images(n=1, h=64, w=96)
    branch = single_scale_of(msc)
    assert single_scale_of(s50).segmentor.kwargs == {'scales': (1.0,)}   # whatever test_scales says
    module, ident = build_source_model(dict(model='msc', scale=0.5), lambda name: msc)
    assert ident == 'msc.s0.5' and isinstance(module, ScaledModel)
    with torch.no_grad():
        seg = msc.segmentor
        small = F.interpolate(x, size=(32, 48), mode='bilinear', align_corners=False)
        scores = seg.decode_head(seg.extract_feat(msc.normalize(small)))    # 1.0 branch only
        expected = F.interpolate(F.interpolate(scores, size=(32, 48), mode='bilinear'),
                                 size=(64, 96), mode='bilinear')
        out = module(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
        assert not torch.allclose(branch(x), msc(x), atol=1e-3)  # the 3-scale fusion differs
        zoo = s50(x)
        # measured: 99.5 % equal labels, mean |difference| 0.3 % of the mean |logit|
        assert (out.argmax(1) == zoo.argmax(1)).float().mean() > 0.97
        assert float((out - zoo).abs().mean() / zoo.abs().mean()) < 0.02


# -- EnsembleModel -----------------------------------------------------------------------------
def test_ensemble_loss_gradient_is_the_weighted_sum_of_member_gradients():
    """∇ Σ_k w_k L(f_k(x), y) computed through the ensemble equals Σ_k w_k ∇L_k computed model by
    model (bit for bit with power-of-two weights), and differs from the gradients of a loss on
    averaged logits or on the mixture's log-probabilities."""
    a, b = Toy(0), Toy(1)
    w = (0.5, 2.0)
    ens = EnsembleModel([a, b], weights=w)
    x = images(h=12, w=16)
    labels = torch.randint(0, 5, (2, 12, 16), generator=torch.Generator().manual_seed(2))
    labels[:, :3] = 255                               # ignored pixels contribute nothing

    def grad(loss_of_x):
        xx = x.clone().requires_grad_(True)
        g, = torch.autograd.grad(loss_of_x(xx), xx)
        return g

    ce = lambda z: F.cross_entropy(z, labels, ignore_index=255, reduction='sum')  # noqa: E731
    got = grad(lambda xx: ensemble_pixel_cross_entropy(ens(xx), labels))
    ga, gb = grad(lambda xx: ce(a(xx))), grad(lambda xx: ce(b(xx)))
    assert torch.equal(got, w[0] * ga + w[1] * gb)
    assert got.abs().sum() > 0
    with torch.no_grad():
        value = ensemble_pixel_cross_entropy(ens(x), labels)
        torch.testing.assert_close(value, w[0] * ce(a(x)) + w[1] * ce(b(x)), rtol=1e-6, atol=0)
    averaged = grad(lambda xx: ce((w[0] * a(xx) + w[1] * b(xx)) / sum(w)))
    mixture = grad(lambda xx: ce(ens(xx).as_subclass(torch.Tensor)))  # loss of log Σ w̄ p_k
    for other in (averaged, mixture):
        assert not torch.allclose(got, other, rtol=1e-3, atol=1e-3)


def test_ensemble_prediction_is_argmax_of_weighted_softmax_sum():
    a, b, c = Toy(0), Toy(1), Toy(2)
    ens = EnsembleModel([a, b, c], weights=[1.0, 3.0, 0.5])
    x = images(h=12, w=16)
    with torch.no_grad():
        out = ens(x)
        probs = 1.0 * a(x).softmax(1) + 3.0 * b(x).softmax(1) + 0.5 * c(x).softmax(1)
        assert isinstance(out, EnsembleLogits) and out.shape == (2, 5, 12, 16)
        assert torch.equal(ens.predict_labels(x), probs.argmax(1))
        torch.testing.assert_close(out.exp().sum(1), torch.ones(2, 12, 16))
        torch.testing.assert_close(out.exp(), probs / 4.5, rtol=1e-5, atol=1e-6)
        # the members disagree, so the ensemble is not simply one of them
        assert not torch.equal(probs.argmax(1), a(x).argmax(1))


def test_ensemble_counters_and_loss_terms():
    a, b = Toy(0), Toy(1)
    ens = EnsembleModel([a, b])
    assert ens.weights == (1.0, 1.0) and ens.num_classes == 5
    with torch.no_grad():
        ens(images(n=3, h=8, w=8))
    out = ens(images(n=2, h=8, w=8).requires_grad_(True))
    assert ens.forward_images == 5 and ens.gradient_images == 2
    assert a.forward_images == 5 and b.forward_images == 5
    assert [w for w, _ in out.loss_terms] == [1.0, 1.0]
    # derived tensors are plain: only the ensemble's own output carries the members' logits
    assert type(out[:1]) is torch.Tensor and not hasattr(out.detach(), 'loss_terms')
    assert member_weighted(out[:1], lambda z: z.sum()).shape == ()
    # nested ensembles flatten into their members with multiplied weights
    outer = EnsembleModel([ens, Toy(2)], weights=[2.0, 1.0])
    assert [w for w, _ in outer(images(n=1, h=8, w=8)).loss_terms] == [2.0, 2.0, 1.0]


@pytest.mark.parametrize('attack', ['fgsm', 'ifgsm'])
def test_attacks_on_an_ensemble_follow_the_weighted_sum_of_losses(attack):
    """attacks.base.pixel_cross_entropy is ensemble-aware: FGSM (and the first I-FGSM step) on the
    ensemble steps along sign(Σ_k w_k ∇L_k)."""
    from attacks import build_attack
    a, b = Toy(0), Toy(1)
    ens = EnsembleModel([a, b], weights=[1.0, 4.0])
    x = images(h=12, w=16).round()
    with torch.no_grad():
        labels = ens(x).argmax(1)
    adv = build_attack({'type': attack, 'num_steps': 1, 'alpha': 4} if attack == 'ifgsm'
                       else {'type': attack}, 4)(ens, x, labels=labels)
    g = torch.zeros_like(x)
    for w, m in ((1.0, a), (4.0, b)):
        xx = x.clone().requires_grad_(True)
        F.cross_entropy(m(xx), labels, reduction='sum').backward()
        g += w * xx.grad
    assert torch.equal(adv, (x + 4 * g.sign()).clamp(0, 255))


def test_ensemble_refuses_bad_weights_and_mixed_classes():
    with pytest.raises(ValueError, match='2 value'):
        EnsembleModel([Toy(0), Toy(1), Toy(2)], weights=[1, 2])
    with pytest.raises(ValueError, match='> 0'):
        EnsembleModel([Toy(0), Toy(1)], weights=[1, 0])
    other = Toy(1)
    other.num_classes = 7
    with pytest.raises(ValueError, match='different numbers of classes'):
        EnsembleModel([Toy(0), other])


# -- unaries of a CRF-RNN ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def crfrnn(tmp_path_factory):
    """A tiny CRF-RNN built as tests/test_model_zoo/test_models/test_crf_rnn.py builds it."""
    from conftest import TINY_CONFIG
    text = TINY_CONFIG.replace('{num_classes}', '5').replace(
        "type='EncoderDecoder',",
        "type='CRFRNN', crf=dict(type='MeanFieldCRF', num_iter_train=2, num_iter_test=4),")
    path = tmp_path_factory.mktemp('crfrnn') / 'tiny_crfrnn.py'
    path.write_text(text)
    torch.manual_seed(0)
    model = PixelSpaceModel.from_segmentor(build_segmentor(path))
    model.name = 'crf'
    return model


def test_unaries_are_the_crf_input(crfrnn):
    seen = []
    handle = crfrnn.segmentor.crf.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    x = images(h=22, w=30)
    try:
        with torch.no_grad():
            full = crfrnn(x)
    finally:
        handle.remove()
    unaries = unaries_of(crfrnn)
    assert unaries.name == 'crf.unaries' and unaries.num_classes == 5
    with torch.no_grad():
        out = unaries(x)
    assert out.shape == full.shape == (2, 5, 22, 30)
    assert torch.equal(out, seen[0])
    assert not torch.allclose(out, full, atol=1e-3)
    # the same network (shared weights), not a copy
    assert unaries.segmentor.segmentor is crfrnn.segmentor
    xx = x.clone().requires_grad_(True)
    unaries(xx).logsumexp(1).sum().backward()
    assert torch.isfinite(xx.grad).all() and xx.grad.abs().sum() > 0
    assert unaries.gradient_images == 2


def test_parts_come_from_the_module_not_the_name(crfrnn, tiny_fcn):
    module, ident = build_source_model(dict(model='anything', part='unaries'), lambda name: crfrnn)
    assert ident == 'anything.unaries' and module.name == 'anything.unaries'
    with pytest.raises(ConfigError, match="no part 'unaries'.*declares the parts none"):
        part_of(tiny_fcn, 'unaries')
    with pytest.raises(ConfigError, match='plain zoo model'):
        part_of(ScaledModel(crfrnn, 0.5), 'unaries')


# -- specs and ids -----------------------------------------------------------------------------
@pytest.mark.parametrize('spec,normal,ident', [
    ('m_1', {'model': 'm_1'}, 'm_1'),
    (dict(model='m_1'), {'model': 'm_1'}, 'm_1'),
    (dict(model='deeplab', scale=0.50), {'model': 'deeplab', 'scale': 0.5}, 'deeplab.s0.5'),
    (dict(model='deeplab', scale=1), {'model': 'deeplab', 'scale': 1.0}, 'deeplab.s1'),
    (dict(model='crf-rnn', part='unaries'), {'model': 'crf-rnn', 'part': 'unaries'}, 'crf-rnn.unaries'),
    (dict(model='crf', part='unaries', scale=0.75), {'model': 'crf', 'part': 'unaries', 'scale': 0.75},
     'crf.unaries.s0.75'),
    (dict(ensemble=['a', 'b']), {'ensemble': [{'model': 'a'}, {'model': 'b'}], 'weights': [1.0, 1.0]},
     'a+b'),
    (dict(ensemble=['a', dict(model='b', scale=0.5)], weights=[1, 2.5]),
     {'ensemble': [{'model': 'a'}, {'model': 'b', 'scale': 0.5}], 'weights': [1.0, 2.5]}, 'a+b.s0.5.w1-2.5'),
])
def test_specs_normalise_and_name(spec, normal, ident):
    assert check_source_spec(spec, ['m_1', 'deeplab', 'crf-rnn', 'crf', 'a', 'b']) == normal
    assert source_id(spec) == ident == source_id(normal)
    assert check_name(ident, 'source') == ident


@pytest.mark.parametrize('spec,message', [
    (dict(model='deeplab', scal=0.5), "unknown key.*'scal'"),
    (dict(scale=0.5), "no 'model' key"),
    (dict(model='deeplab', scale=0), r'scale must be a number in \(0, 4\]'),
    (dict(model='deeplab', scale=5), r'\(0, 4\]'),
    (dict(model='deeplab', scale='half'), r'\(0, 4\]'),
    (dict(model='deeplab', part='crf'), "unknown part 'crf'.*'unaries'"),
    (dict(model='other'), "'other' is not one of the suite's models"),
    ('bad/name', 'not a model name'),
    (dict(ensemble=['deeplab']), 'at least two'),
    (dict(ensemble='deeplab'), 'at least two'),
    (dict(ensemble=['deeplab', 'fcn'], weights=[1]), '1 value.*2 ensemble members'),
    (dict(ensemble=['deeplab', 'fcn'], weights=[1, -1]), '> 0'),
    (dict(ensemble=['deeplab', 'fcn'], weight=[1, 1]), "unknown key.*'weight'"),
    (dict(ensemble=['deeplab', dict(model='deeplab')]), 'listed twice'),
    (dict(ensemble=['deeplab', dict(ensemble=['fcn', 'deeplab'])]), 'cannot be an ensemble'),
    (3, 'is a int'),
])
def test_specs_refused_with_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        check_source_spec(spec, ['deeplab', 'fcn'])


def test_source_list_ids_are_unique():
    pairs = check_sources(['a', dict(model='a', scale=0.5), dict(ensemble=['a', 'b'])], ['a', 'b'])
    assert [i for _, i in pairs] == ['a', 'a.s0.5', 'a+b']
    with pytest.raises(ValueError, match='same source'):
        check_sources(['a', dict(model='a')], ['a'])
    with pytest.raises(ValueError, match='also the name of a model'):
        check_sources([dict(model='a', scale=0.5)], ['a', 'a.s0.5'])


def test_build_source_model_builds_each_kind(tiny_fcn):
    built = []

    def build(name):
        built.append(name)
        return tiny_fcn

    module, ident = build_source_model('tiny', build)
    assert module is tiny_fcn and ident == 'tiny' and tiny_fcn.name == 'tiny'
    module, ident = build_source_model(dict(model='tiny', scale=0.5), build)
    assert isinstance(module, ScaledModel) and module.model is tiny_fcn and module.scale == 0.5
    assert module.name == ident == 'tiny.s0.5'
    module, ident = build_source_model(dict(ensemble=['tiny', dict(model='tiny', scale=2)],
                                            weights=[1, 3]), build)
    assert isinstance(module, EnsembleModel) and ident == 'tiny+tiny.s2.w1-3'
    assert isinstance(module.members[1], ScaledModel) and module.weights == (1.0, 3.0)
    assert built == ['tiny'] * 4
    with torch.no_grad():
        assert module(images(n=1)).shape == (1, 5, 26, 34)


def test_square_attack_loss_oracle_sums_the_members_losses():
    """The black-box loss of Square Attack on an ensemble is Σ_k w_k of the members' losses."""
    from attacks.square import per_image_loss
    a, b = Toy(0), Toy(1)
    ens = EnsembleModel([a, b], weights=[1.0, 2.0])
    x = images(h=12, w=16)
    with torch.no_grad():
        labels = ens(x).argmax(1)
        expected = per_image_loss(a(x), labels) + 2.0 * per_image_loss(b(x), labels)
        assert torch.allclose(per_image_loss(ens(x), labels), expected, rtol=1e-6)

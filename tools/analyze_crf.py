"""Why is the demo CRF-RNN the least robust demo model? Measurements after Arnab et al. 2018, Sec. 7.

Arnab et al. (https://arxiv.org/abs/1711.09856, Sec. 7 and Fig. 4) found CRF-RNN (Zheng et al.
2015, https://arxiv.org/abs/1502.03240) markedly more robust than its FCN to untargeted attacks,
and explained it by over-confident mean-field marginals (mean top-class probability / entropy
99.1 % / 0.025 nats against 95.2 % / 0.13 nats, §7.1) acting like gradient masking: FGSM examples
computed on the unaries (the network without its mean-field layer) hurt CRF-RNN *more* than its
own white-box FGSM (Fig. 4b). This tool measures the same quantities on the demo CRF-RNN, its
unaries and the FCN it was fine-tuned from, on the demo suite's images:

1. confidence of the clean prediction (mean top-class probability, mean entropy in nats, mean
   top-1 minus top-2 logit margin, share of pixels above 99 %);
2. input gradients of the summed pixel cross-entropy w.r.t. each model's own clean prediction (the
   FGSM loss): norms, sign agreement between the CRF-RNN and its unaries, the gradient at the
   unaries with and without the mean-field layer, whether the bilateral kernel's features carry
   gradient, and how much an FGSM perturbation shrinks the bilateral kernel's neighbourhood mass;
3. FGSM and FGSM II (optionally Iterative FGSM II) at ε = 2, 4, 8: white-box on each model, from the unaries and from the FCN
   evaluated on CRF-RNN (Arnab Fig. 4b), and the white-box CRF-RNN example evaluated with the
   bilateral kernel of the clean image (what the perturbation does through the kernel alone);
4. the demo CRF's mean-field settings against crfasrnn's, and two variants of the CRF-RNN, each
   attacked white-box and from its unaries: "sharper" ones (pairwise kernel weights multiplied by
   ``--sharpen`` factors) to test the confidence hypothesis, and the same mean-field layer on the
   FCN's own weights ("FCN + CRF": the unaries before end-to-end fine-tuning).

The unaries are the CRF-RNN module itself with ``crf.num_iter_test = 0`` (``MeanFieldCRF``
returns its unary input unchanged for 0 iterations), built as a separate instance, so nothing in
the model code changes. Everything is deterministic on CPU.

Example (the numbers in docs/crf_rnn_robustness.md)::

    .venv/bin/python tools/analyze_crf.py --num-images 8 --threads 1
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import time
from typing import Dict, Iterator, List, Optional, Sequence

from _cli import REPO_ROOT, main_guard, setup_logging

logger = logging.getLogger('analyze_crf')

#: crfasrnn's public model (torrvision/crfasrnn, TVG_CRFRNN_new_deploy.prototxt; Zheng et al. 2015)
CRFASRNN_DEFAULTS = dict(num_iter_train=5, num_iter_test=10, theta_alpha=160.0, theta_beta=3.0,
                         theta_gamma=3.0, spatial_weight=3.0, bilateral_weight=5.0,
                         compatibility=-1.0)
#: Arnab et al. 2018, §7.1 (Pascal VOC): (mean top-class probability, mean entropy in nats)
ARNAB_CONFIDENCE = {'CRF-RNN': (0.991, 0.025), 'FCN8s': (0.952, 0.13)}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--suite', default='benchmark/suites/demo.py',
                   help='suite whose dataset is used (default: the demo suite)')
    p.add_argument('--num-images', type=int, default=8,
                   help='images of the suite dataset\'s split (default 8, the demo suite\'s)')
    p.add_argument('--crf', default='crfrnn_r18-w16_synthcity', help='zoo name of the CRF-RNN')
    p.add_argument('--fcn', default='fcn_r18-w16_synthcity',
                   help='zoo name of the FCN the CRF-RNN was fine-tuned from')
    p.add_argument('--epsilons', type=float, nargs='+', default=[2.0, 4.0, 8.0])
    p.add_argument('--attacks', nargs='+', default=['fgsm', 'fgsm_ll'],
                   help='attacks (registry names) run white-box and from the unaries and the FCN '
                        '(default: fgsm fgsm_ll; ifgsm_ll adds ~2 min per 8 images)')
    p.add_argument('--sharpen', type=float, nargs='*', default=[3.0],
                   help='factors for the CRF\'s pairwise kernel weights (sharper CRF variants); '
                        'none to skip')
    p.add_argument('--json', default=None, help='also write the numbers to this JSON file')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('-v', '--verbose', action='store_true')
    return p.parse_args(argv)


# -- models ----------------------------------------------------------------------------------------
def build_models(crf_name: str, fcn_name: str, sharpen: Sequence[float]):
    """``{label: PixelSpaceModel}``: FCN, unaries (CRF-RNN with 0 mean-field iterations), CRF-RNN,
    the CRF-RNN's mean-field layer on the FCN's weights (``'FCN + CRF'``), and CRF-RNN with its
    pairwise kernel weights multiplied by each factor of ``sharpen``."""
    import torch

    from benchmark.errors import ConfigError
    from model_zoo.builder import build_pixel_model
    from model_zoo.zoo import load_metafile

    zoo = load_metafile()
    for name in (crf_name, fcn_name):
        if name not in zoo or zoo[name].weights is None:
            raise ConfigError(f'{name!r} is not a zoo model with weights; expected zoo names such as '
                              'crfrnn_r18-w16_synthcity and fcn_r18-w16_synthcity')

    def build(name):
        e = zoo[name]
        model, _ = build_pixel_model(e.config, e.weights, sha256=e.sha256, key_renames=e.key_renames,
                                     ignore_keys=e.ignore_keys)
        return model

    models = {'FCN': build(fcn_name), 'CRF-RNN': build(crf_name)}
    if not hasattr(models['CRF-RNN'].segmentor, 'crf'):
        raise ConfigError(f'{crf_name!r} has no mean-field layer (segmentor.crf); expected a CRFRNN model')
    unaries = build(crf_name)
    unaries.segmentor.crf.num_iter_test = 0   # MeanFieldCRF returns its unary input for 0 iterations
    models['unaries'] = unaries
    # the demo CRF's mean-field layer on the unaries of the FCN it was fine-tuned from (CRF as
    # post-processing, no end-to-end training): same CRF, unaries not softened by fine-tuning
    m = build(crf_name)
    missing, unexpected = m.segmentor.load_state_dict(models['FCN'].segmentor.state_dict(), strict=False)
    if unexpected or any(not k.startswith('crf.') for k in missing):
        raise ConfigError(f'{fcn_name!r} and {crf_name!r} do not share their network part '
                          f'(unexpected {unexpected[:3]}, missing {missing[:3]}); expected the FCN '
                          'the CRF-RNN was fine-tuned from')
    models['FCN + CRF'] = m
    for s in sharpen:
        m = build(crf_name)
        with torch.no_grad():
            m.segmentor.crf.spatial_ker_weights.mul_(s)
            m.segmentor.crf.bilateral_ker_weights.mul_(s)
        models[f'CRF-RNN x{s:g}'] = m
    order = ['FCN', 'unaries', 'CRF-RNN']
    return {k: models[k] for k in order + [k for k in models if k not in order]}


@contextlib.contextmanager
def capture_unaries(model) -> Iterator[List]:
    """Keep the unary input of the model's mean-field layer (with ``retain_grad``) while inside."""
    seen: List = []

    def hook(module, args):
        if args[0].requires_grad:
            args[0].retain_grad()
        seen.append(args[0])

    handle = model.segmentor.crf.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def kernel_image(model, images):
    """Build the mean-field layer's kernels from ``images`` (RGB 0-255), whatever the input is."""
    def hook(module, args):
        if args[1].shape != images.shape:
            raise RuntimeError(f'kernel image {tuple(images.shape)} does not match the CRF input '
                               f'{tuple(args[1].shape)} (the model pads its input)')
        return (args[0], images.to(args[1]))

    handle = model.segmentor.crf.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# -- measurements ----------------------------------------------------------------------------------
def confidence(logits) -> Dict[str, object]:
    """Per-image pixel means of the top-class probability, the entropy (nats) and the logit margin
    (Arnab et al. 2018, §7.1), each image's share of pixels with top probability > 0.99, and the
    share of neighbouring pixel pairs with the same least-likely class (FGSM II's target map)."""
    import torch
    logp = torch.log_softmax(logits.double(), 1)
    top = logp.max(1).values.exp()
    two = logits.double().topk(2, dim=1).values
    ll = logits.argmin(1)
    same = torch.cat([(ll[:, 1:] == ll[:, :-1]).flatten(1), (ll[:, :, 1:] == ll[:, :, :-1]).flatten(1)], 1)
    return dict(top_probability=top.mean((1, 2)).tolist(),
                ll_smooth=same.double().mean(1).tolist(),
                entropy=(-(logp.exp() * logp).sum(1)).mean((1, 2)).tolist(),
                margin=(two[:, 0] - two[:, 1]).mean((1, 2)).tolist(),
                above_99=(top > 0.99).double().mean((1, 2)).tolist())


def gradient_stats(model, images, labels, watch_unaries: bool) -> Dict[str, object]:
    """Input gradient of the summed pixel cross-entropy (the FGSM loss) and the gradient at the
    unaries (the mean-field layer's input, or the logits themselves for a model without it)."""
    import torch

    from attacks import pixel_cross_entropy
    x = images.detach().clone().requires_grad_(True)
    ctx = capture_unaries(model) if watch_unaries else contextlib.nullcontext([])
    with torch.enable_grad(), ctx as seen:
        logits = model(x)
        if not watch_unaries:
            logits.retain_grad()
        pixel_cross_entropy(logits, labels).backward()
    g = x.grad.detach()
    gu = (seen[0] if watch_unaries else logits).grad.detach()
    per_pixel = gu.abs().sum(1)   # L1 over classes of dL/dU at each pixel
    return dict(grad=g, l2=g.flatten(1).norm(dim=1).tolist(), zero=(g == 0).double().flatten(1).mean(1).tolist(),
                unary_l2=gu.flatten(1).norm(dim=1).tolist(),
                unary_small=(per_pixel < 1e-3).double().flatten(1).mean(1).tolist())


def sign_agreement(a, b) -> List[float]:
    """Per image: share of input entries where two gradients have the same sign (both non-zero)."""
    both = (a != 0) & (b != 0)
    same = (a.sign() == b.sign()) & both
    return (same.double().flatten(1).sum(1) / both.double().flatten(1).sum(1).clamp(min=1)).tolist()


def bilateral_mass(model, images):
    """Per image: mean over pixels of the bilateral kernel's un-normalised mass ``K 1`` (the
    effective number of neighbours the mean-field layer averages over, self included)."""
    import torch
    with torch.no_grad():
        _, bilateral = model.segmentor.crf.kernels(images)
    return (1.0 / bilateral.norm.double()).flatten(1).mean(1)


def bilateral_gradient_path(model, images) -> bool:
    """Whether the mean-field output depends differentiably on the bilateral kernel's image."""
    import torch
    crf = model.segmentor.crf
    img = images[:1].detach().clone().requires_grad_(True)
    unary = torch.randn((1, crf.num_classes) + tuple(images.shape[-2:]))
    with torch.enable_grad():
        out = crf(unary, img)
        if not out.requires_grad:
            return False
        grad, = torch.autograd.grad(out.sum(), img, allow_unused=True)
    return grad is not None and bool(grad.abs().sum() > 0)


class Tally:
    """Confusion matrices against the ground truth, summed per (row, ε)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.conf: Dict[tuple, object] = {}

    def add(self, key, labels, pred) -> None:
        from benchmark.metrics import batch_confusion_matrices
        m = batch_confusion_matrices(labels.numpy(), pred.numpy(), self.num_classes).sum(0)
        self.conf[key] = m if key not in self.conf else self.conf[key] + m

    def miou(self, key) -> float:
        from benchmark.metrics import mean_iou
        return mean_iou(self.conf[key])


# -- the run ---------------------------------------------------------------------------------------
def analyse(args) -> dict:
    import numpy as np
    import torch
    from mmengine.config import Config

    from attacks import attack_class, build_attack
    from benchmark.datasets.builder import build_eval_dataset
    from benchmark.errors import ConfigError

    torch.set_num_threads(args.threads)
    if args.num_images < 1 or args.batch_size < 1 or args.threads < 1:
        raise ConfigError('--num-images, --batch-size and --threads must be positive integers, got '
                          f'{args.num_images}, {args.batch_size}, {args.threads}')
    if any(s <= 0 for s in args.sharpen):
        raise ConfigError(f'--sharpen factors must be positive, got {args.sharpen}')
    for name in args.attacks:
        try:
            attack_class(name)
        except KeyError as e:
            raise ConfigError(f'--attacks: {e.args[0]}') from None
    suite = Config.fromfile(str(REPO_ROOT / args.suite) if not args.suite.startswith('/') else args.suite)
    spec = dict(suite.dataset)
    spec['num_images'] = args.num_images
    data = build_eval_dataset(spec)
    models = build_models(args.crf, args.fcn, args.sharpen)
    crf, una, fcn = models['CRF-RNN'], models['unaries'], models['FCN']
    sharp = [k for k in models if k.startswith('CRF-RNN x')]
    # variants of the CRF: attacked white-box and from their unaries
    variants = {'FCN + CRF': 'FCN', **{k: 'unaries' for k in sharp}}
    tally = Tally(data.num_classes)
    stats: Dict[str, Dict[str, list]] = {}

    def log(key, values):
        stats.setdefault(key[0], {}).setdefault(key[1], []).extend(values)

    t0 = time.perf_counter()
    for images, labels, _ in data.batches(args.batch_size):
        logger.info('batch of %d images (%.0f s)', len(images), time.perf_counter() - t0)
        preds = {}
        with torch.no_grad():
            for name, model in models.items():
                logits = model(images)
                preds[name] = logits.argmax(1)
                tally.add((name, 'clean', 0.0), labels, preds[name])
                for k, v in confidence(logits).items():
                    log((name, k), v)
        with capture_unaries(crf) as seen, torch.no_grad():
            crf(images)
        if not torch.equal(seen[0], una(images)):
            raise RuntimeError('the unaries model does not reproduce the mean-field layer\'s input')
        grads = {}
        for name in ('FCN', 'unaries', 'CRF-RNN'):
            g = gradient_stats(models[name], images, preds[name], watch_unaries=name == 'CRF-RNN')
            grads[name] = g.pop('grad')
            for k, v in g.items():
                log((name, 'grad_' + k), v)
        log(('CRF-RNN', 'sign_vs_unaries'), sign_agreement(grads['CRF-RNN'], grads['unaries']))
        log(('CRF-RNN', 'sign_vs_FCN'), sign_agreement(grads['CRF-RNN'], grads['FCN']))
        log(('unaries', 'sign_vs_FCN'), sign_agreement(grads['unaries'], grads['FCN']))
        clean_mass = bilateral_mass(crf, images)
        for attack in args.attacks:
            for eps in args.epsilons:
                atk = build_attack(dict(type=attack), eps)
                adv = {src: atk(models[src], images, labels=preds[src])
                       for src in ('FCN', 'unaries', 'CRF-RNN', *variants)}
                with torch.no_grad():
                    for src, x in adv.items():
                        tally.add((f'{attack} {src} -> {src}', eps), labels, models[src](x).argmax(1))
                    for src in ('FCN', 'unaries'):
                        tally.add((f'{attack} {src} -> CRF-RNN', eps), labels, crf(adv[src]).argmax(1))
                    tally.add((f'{attack} CRF-RNN -> unaries', eps), labels, una(adv['CRF-RNN']).argmax(1))
                    with kernel_image(crf, images):
                        tally.add((f'{attack} CRF-RNN -> CRF-RNN, clean kernel', eps), labels,
                                  crf(adv['CRF-RNN']).argmax(1))
                    for name, src in variants.items():
                        tally.add((f'{attack} {src} -> {name}', eps), labels,
                                  models[name](adv[src]).argmax(1))
                    log(('CRF-RNN', f'mass_ratio {attack} eps{eps:g}'),
                        (bilateral_mass(crf, adv['CRF-RNN']) / clean_mass).tolist())
    seconds = time.perf_counter() - t0
    means = {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in stats.items()}
    return dict(models=models, tally=tally, means=means, seconds=seconds, num_images=len(data),
                crf_path=bilateral_gradient_path(crf, images), sharp=sharp, dataset=data.name)


# -- report ----------------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---:' if i else '---'
                                                              for i in range(len(header))) + '|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines)


def settings_table(args, crf_model) -> str:
    from mmengine.config import Config

    from model_zoo.zoo import load_metafile
    c = crf_model.segmentor.crf
    e = load_metafile()[args.crf]
    cfg = Config.fromfile(str(REPO_ROOT / e.config))
    d = CRFASRNN_DEFAULTS

    def diag(p):
        v = p.detach().diag()
        return f'{v.mean():.3f} (diagonal {v.min():.3f} to {v.max():.3f}; off-diagonal mean ' \
               f'absolute value {(p.detach() - p.detach().diag().diag()).abs().mean():.3f})'

    rows = [('mean-field iterations train / test', f'{c.num_iter_train} / {c.num_iter_test}',
             f"{d['num_iter_train']} / {d['num_iter_test']}"),
            ('θα (bilateral, px) / θβ (colour, 0-255) / θγ (spatial, px)',
             f'{c.theta_alpha:g} / {c.theta_beta:g} / {c.theta_gamma:g}',
             f"{d['theta_alpha']:g} / {d['theta_beta']:g} / {d['theta_gamma']:g}"),
            ('spatial kernel weight (learned)', diag(c.spatial_ker_weights), f"{d['spatial_weight']:g} I"),
            ('bilateral kernel weight (learned)', diag(c.bilateral_ker_weights),
             f"{d['bilateral_weight']:g} I"),
            ('compatibility (learned)', diag(c.compatibility_matrix), f"{d['compatibility']:g} I (Potts)"),
            ('filter normalisation', c.normalization, 'mean (K q / K 1)'),
            ('training', f"{cfg.get('max_iters')} iterations from {cfg.get('load_from')}, "
                         f"{cfg.optim_wrapper.optimizer.type} lr {cfg.optim_wrapper.optimizer.lr:g}",
             'end to end from FCN-8s (Zheng et al. 2015, Sec. 6)')]
    return _table(('setting', 'demo CRF', 'crfasrnn'), rows)


def report(args, r) -> str:
    t, m = r['tally'], r['means']
    names = list(r['models'])
    out = [f"{r['num_images']} images of {r['dataset']} ({args.suite}); {r['seconds']:.0f} s at "
           f'{args.threads} thread(s).', '', '1. Confidence of the clean prediction (Arnab §7.1: CRF-RNN '
           '99.1 % / 0.025 nats, FCN8s 95.2 % / 0.13 nats)', '']
    out.append(_table(('model', 'clean mIoU', 'top-class prob.', 'entropy (nats)', 'logit margin',
                       'pixels > 99 %', 'least-likely map: equal neighbours'),
                      [(n, f"{100 * t.miou((n, 'clean', 0.0)):.1f}", f"{100 * m[n]['top_probability']:.1f} %",
                        f"{m[n]['entropy']:.3f}", f"{m[n]['margin']:.2f}", f"{100 * m[n]['above_99']:.1f} %",
                        f"{100 * m[n]['ll_smooth']:.1f} %")
                       for n in names]))
    out += ['', '2. Input gradients of the FGSM loss (summed pixel cross-entropy, own clean prediction)', '']
    rows = []
    for n in ('FCN', 'unaries', 'CRF-RNN'):
        rows.append((n, f"{m[n]['grad_l2']:.3g}", f"{100 * m[n]['grad_zero']:.2f} %",
                     f"{m[n]['grad_unary_l2']:.3g}", f"{100 * m[n]['grad_unary_small']:.1f} %",
                     f"{100 * m[n].get('sign_vs_unaries', float('nan')):.1f} %"
                     if n == 'CRF-RNN' else '–',
                     f"{100 * m[n]['sign_vs_FCN']:.1f} %" if n != 'FCN' else '–'))
    out.append(_table(('model', '‖∇x L‖₂ per image', 'zero entries', '‖∂L/∂U‖₂ at unaries',
                       'pixels with ∂L/∂U L1 < 1e-3', 'sign agreement with unaries',
                       'sign agreement with FCN'), rows))
    out += ['', f"Bilateral kernel features carry gradient: {'yes' if r['crf_path'] else 'no'} "
            '(autograd path from the kernel image to the mean-field output).',
            'Bilateral neighbourhood mass K1 on the white-box CRF-RNN example / on the clean image: '
            + '; '.join(f"{a} " + ', '.join(f"ε={e:g}: {m['CRF-RNN'][f'mass_ratio {a} eps{e:g}']:.3f}"
                                          for e in args.epsilons) for a in args.attacks), '']
    out += [f"3. mIoU (%) under {', '.join(args.attacks)}, source -> evaluated model "
            '(IoU ratio in brackets)', '']
    rows = []
    for attack in args.attacks:
        keys = sorted({k[0] for k in t.conf if k[0].startswith(attack + ' ')},
                      key=lambda s: (s.split(' -> ')[1], s))
        for key in keys:
            target = key.split(' -> ')[1].split(',')[0]
            clean = t.miou((target, 'clean', 0.0))
            rows.append((key, *(f'{100 * t.miou((key, e)):.1f} ({100 * t.miou((key, e)) / clean:.0f})'
                                for e in args.epsilons)))
    out.append(_table(('attack source -> model', *(f'ε = {e:g}' for e in args.epsilons)), rows))
    out += ['', '4. Mean-field settings', '', settings_table(args, r['models']['CRF-RNN'])]
    return '\n'.join(out)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    r = analyse(args)
    if args.json:
        import json
        t = r['tally']
        data = dict(vars(args), num_images=r['num_images'], seconds=r['seconds'], means=r['means'],
                    bilateral_features_carry_gradient=r['crf_path'],
                    miou={' @ '.join(map(str, k)): t.miou(k) for k in t.conf})
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=1)
    print(report(args, r))


if __name__ == '__main__':
    main_guard(main)

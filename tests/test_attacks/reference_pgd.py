"""Independent reference implementations of PGD, MI-FGSM, SegPGD and CosPGD.

Written from the papers' equations with plain torch; nothing is imported from ``attacks/``. Each
image is processed on its own (a loop over the batch), the projection is written as min/max
against ``x ± ε`` and the loss weights are built from explicit pixel sets / one-hot vectors.
"""
import torch
import torch.nn.functional as F
from conftest import CountingModel  # noqa: F401  (re-exported for test modules)


def _clip(adv, x, eps):
    """Madry et al.'s Π_{x+S}: into [x − ε, x + ε], then the valid pixel range [0, 255]."""
    return torch.max(torch.min(adv, x + eps), x - eps).clamp(0, 255)


def _pixel_ce(logits, y):
    """Per-pixel cross-entropy −log softmax(logits)_y, (H, W), 0 where y = 255 (one image)."""
    logp = torch.log_softmax(logits, dim=0)
    valid = y != 255
    y0 = torch.where(valid, y, torch.zeros_like(y))
    ce = -logp.gather(0, y0[None])[0]
    return torch.where(valid, ce, torch.zeros_like(ce))


def _image_grad(model, xi, yi, weight_fn=None):
    """∇_x of Σ_pixels w · CE for one image (1, 3, H, W); ``weight_fn(logits) -> (H, W)``."""
    xi = xi.clone().requires_grad_(True)
    logits = model(xi)[0]
    ce = _pixel_ce(logits, yi)
    if weight_fn is not None:
        ce = ce * weight_fn(logits.detach())
    ce.sum().backward()
    return xi.grad.detach()


def ref_pgd(model, x, y, eps, alpha, steps, start=None, target=None):
    """Madry et al. 2018 / Xiang et al. eq. 3: x_{t+1} = Π(x_t ± α sign ∇L); '−' towards a target."""
    out = []
    for i in range(len(x)):
        xi = x[i:i + 1]
        adv = xi.clone() if start is None else start[i:i + 1].clone()
        for _ in range(steps):
            if target is None:
                adv = _clip(adv + alpha * torch.sign(_image_grad(model, adv, y[i])), xi, eps)
            else:
                adv = _clip(adv - alpha * torch.sign(_image_grad(model, adv, target[i])), xi, eps)
        out.append(adv)
    return torch.cat(out)


def ref_mifgsm(model, x, y, eps, steps=20, mu=1.0, alpha=None):
    """Dong et al. 2018, Algorithm 1: g_{t+1} = μ g_t + ∇/‖∇‖_1, x_{t+1} = clip(x_t + α sign g_{t+1})."""
    alpha = eps / steps if alpha is None else alpha
    out = []
    for i in range(len(x)):
        xi = x[i:i + 1]
        adv, g = xi.clone(), torch.zeros_like(xi)
        for _ in range(steps):
            grad = _image_grad(model, adv, y[i])
            g = mu * g + grad / torch.sum(torch.abs(grad))
            adv = _clip(adv + alpha * torch.sign(g), xi, eps)
        out.append(adv)
    return torch.cat(out)


def ref_segpgd_weights(logits, y, t, T):
    """Gu et al. 2022: (1 − λ) on P^T (argmax = y), λ on P^F, λ = (t − 1)/(2T); (N, H, W)."""
    lam = (t - 1) / (2 * T)
    pred = logits.argmax(1)
    correct = (pred == y) & (y != 255)
    wrong = (pred != y) & (y != 255)
    return (1 - lam) * correct.float() + lam * wrong.float()


def ref_cospgd_weights(logits, y, num_classes):
    """Agnihotri et al. 2024: cos(softmax(logits), one_hot(y)) per pixel, (N, H, W); 0 at 255."""
    valid = y != 255
    onehot = F.one_hot(torch.where(valid, y, torch.zeros_like(y)), num_classes).permute(0, 3, 1, 2)
    cos = F.cosine_similarity(torch.softmax(logits, 1), onehot.float(), dim=1)
    return cos * valid.float()


def ref_segpgd(model, x, y, eps, alpha, steps, start):
    """Gu et al. 2022, Algorithm 1, with the 1/(HW) constant dropped (sign-invariant)."""
    out = []
    for i in range(len(x)):
        xi, adv = x[i:i + 1], start[i:i + 1].clone()
        for t in range(1, steps + 1):
            weight = lambda lg, t=t: ref_segpgd_weights(lg[None], y[i:i + 1], t, steps)[0]  # noqa: E731
            adv = _clip(adv + alpha * torch.sign(_image_grad(model, adv, y[i], weight)), xi, eps)
        out.append(adv)
    return torch.cat(out)


def ref_cospgd(model, x, y, eps, alpha, steps, start, num_classes):
    """Agnihotri et al. 2024, Algorithm 1 (untargeted), 1/(HW) dropped."""
    out = []
    for i in range(len(x)):
        xi, adv = x[i:i + 1], start[i:i + 1].clone()
        weight = lambda lg: ref_cospgd_weights(lg[None], y[i:i + 1], num_classes)[0]  # noqa: E731
        for _ in range(steps):
            adv = _clip(adv + alpha * torch.sign(_image_grad(model, adv, y[i], weight)), xi, eps)
        out.append(adv)
    return torch.cat(out)

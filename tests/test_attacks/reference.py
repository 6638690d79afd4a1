"""Independent reference implementations written from the papers' equations.

No code is shared with ``attacks/``: loss, gradient, sign step, clipping and the least-likely
target are re-derived here, per image, with plain torch.
"""
import math

import torch
import torch.nn.functional as F


def _grad(model, x, y):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, y, ignore_index=255, reduction='none').sum()
    loss.backward()
    return x.grad.detach(), logits.detach()


def ref_fgsm(model, x, y, eps):
    """Arnab et al. eq. 3 with clipping to the valid image range."""
    g, _ = _grad(model, x, y)
    return (x + eps * torch.sign(g)).clamp(0, 255)


def ref_fgsm_ll(model, x, eps):
    """Arnab et al. eq. 4, y_t = least likely class of the clean image."""
    with torch.no_grad():
        y_ll = model(x).argmin(1)
    g, _ = _grad(model, x, y_ll)
    return (x - eps * torch.sign(g)).clamp(0, 255)


def ref_steps(eps):
    return int(math.ceil(min(eps + 4, 1.25 * eps)))


def ref_ifgsm(model, x, y, eps, alpha=1.0, steps=None, least_likely=False):
    """Arnab et al. eqs. 5/6 (Kurakin's Clip: ε-ball then [0, 255])."""
    steps = ref_steps(eps) if steps is None else steps
    adv = x.clone()
    for _ in range(steps):
        if least_likely:
            with torch.no_grad():
                target = model(adv).argmin(1)
            g, _ = _grad(model, adv, target)
            adv = adv - alpha * torch.sign(g)
        else:
            g, _ = _grad(model, adv, y)
            adv = adv + alpha * torch.sign(g)
        adv = torch.max(torch.min(adv, x + eps), x - eps).clamp(0, 255)
    return adv

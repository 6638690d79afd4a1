# Xiang et al., "Adversarial Examples for Semantic Segmentation" (FGSM, MI-FGSM, PGD, Square
# Attack), on the built-in synthetic street scenes. ε = 8 throughout ("The maximum perturbation ϵ
# is set to 8 among all experiments").
#
# * White-box: FGSM, MI-FGSM (μ = 1, 20 iterations), PGD-20/100/200 (α = ε / iterations, random start).
# * PGD iterations 20-100 (their Fig. 3).
# * Black-box: Square Attack with the per-pixel cross-entropy as loss oracle, vertical and
#   horizontal stripe initialisation (their Fig. 4), 1000 queries per image.
suite_name = 'xiang'
description = 'Xiang et al.: FGSM, MI-FGSM, PGD-20/100/200 and Square Attack at ε = 8'
# REDUCED for the committed results: 8 images (from 16), so the suite takes about 15 minutes with
# two ranks on this 2-core CPU (each image costs 511 forward+backward and 2000 forward passes per
# model); set num_images=16 for the full setting.
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
models = ['fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity', 'deeplabv2-aspp_r18-w16_synthcity']
attacks = [
    dict(type='fgsm'),
    dict(type='mifgsm'),
    dict(type='pgd', num_steps=20),
    dict(type='pgd', num_steps=40),
    dict(type='pgd', num_steps=60),
    dict(type='pgd', num_steps=80),
    dict(type='pgd', num_steps=100),
    dict(type='pgd', num_steps=200),
    dict(type='square', init='vertical'),
    dict(type='square', init='horizontal'),
]
epsilons = [8]
label_source = 'prediction'
batch_size = 8
seed = 0

# The main job on the built-in data: Arnab et al.'s (2018) attack grid, in full (FGSM, FGSM II,
# Iterative FGSM, Iterative FGSM II; α = 1, n = min(ε + 4, ⌈1.25 ε⌉); ε ∈ {0.25, ..., 32}), against
# the demo models trained on the synthetic Cityscapes-layout dataset. The grid is kept whole; only
# the image count is small (10), so the job runs in about 7.5 minutes on a 2-core CPU.
suite_name = 'demo'
description = "Arnab et al. (2018) attack grid on the built-in synthetic street scenes"
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=10)
# Demo models whose committed weights reach >= 50% clean mIoU on the synthetic val split
# (model_zoo/metafile.yaml lists the others, to be trained with tools/train_demo_zoo.py).
models = [
    'fcn_r18-w16_synthcity',
    'fcn8s_vgg16-w8_synthcity',
    'pspnet_r18-w16_synthcity',
    'icnet_r18-w16_synthcity',
    'enet_synthcity',
    'deeplabv2-aspp_r18-w16_synthcity',
    'deeplabv2-aspp-msc_r18-w16_synthcity',
]
attacks = [
    dict(type='fgsm'),
    dict(type='fgsm_ll'),
    dict(type='ifgsm'),
    dict(type='ifgsm_ll'),
]
epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
label_source = 'prediction'
batch_size = 8
seed = 0

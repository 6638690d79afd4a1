# The main job on the built-in data: Arnab et al.'s (2018) attack grid, in full (FGSM, FGSM II,
# Iterative FGSM, Iterative FGSM II; α = 1, n = min(ε + 4, ⌈1.25 ε⌉); ε ∈ {0.25, ..., 32}), against
# every demo architecture of the zoo, trained on the synthetic Cityscapes-layout dataset. The grid
# is kept whole; the image count is small (8) so that the job fits in 10 minutes on a 2-core CPU
# (measured figure in README.md). Two processes use two cores better than one process with two
# threads: `torchrun --standalone --nproc-per-node 2 tools/run_benchmark.py --launcher pytorch
# benchmark/suites/demo.py` deals the two batches of 4 images to two ranks (records are the same
# bits with one rank or two).
suite_name = 'demo'
description = "Arnab et al. (2018) attack grid on the built-in synthetic street scenes"
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
models = [
    'crfrnn_r18-w16_synthcity',
    'deeplabv2-aspp-msc_r18-w16_synthcity',
    'enet_synthcity',
    'segnet_vgg16bn-c16_synthcity',
    'pspnet_r18-w16_synthcity',
    'fcn_r18-w16_synthcity',
    'dilatednet-context_vgg16-w8_synthcity',
    'dilatednet-front_vgg16-w8_synthcity',
    'deeplabv2-aspp_vgg16-w8_synthcity',
    'deeplabv2-aspp_r18-w16_synthcity',
    'icnet_r18-w16_synthcity',
    'fcn8s_vgg16-w8_synthcity',
    'fcn16s_vgg16-w8_synthcity',
    'fcn32s_vgg16-w8_synthcity',
    'fcn8s_r18-w16_synthcity',
]
attacks = [
    dict(type='fgsm'),
    dict(type='fgsm_ll'),
    dict(type='ifgsm'),
    dict(type='ifgsm_ll'),
]
epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
label_source = 'prediction'
batch_size = 4
seed = 0

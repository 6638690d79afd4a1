# Fischer et al. 2017, "Adversarial Examples for Semantic Image Segmentation"
# (https://arxiv.org/abs/1703.01101), on the built-in synthetic street scenes.
#
# Hide every person pixel: the target keeps the clean prediction and gives each person pixel the
# class of its nearest non-person pixel. Kurakin's iterative least-likely method towards that
# target with α = 1 and n = min(ε + 4, ⌈1.25 ε⌉) (their Sec. 2; unweighted loss, no τ rule), with
# the noise on the entire image and, as in their right-hand plot of Fig. 2, the same perturbation
# restricted afterwards to the person pixels of the clean prediction. Reported: person pixels hidden
# and background pixels preserved (their Fig. 2, also as per-image mean ± sd), targeted success rate.
#
# Cost: 5.3 min for the FCN demo model (1 thread, shared 2-core machine). Its results are committed
# (results/fischer2017, leaderboard/): at ε = 10, 98.8% of person pixels hidden and 97.3% of the
# background preserved with noise on the entire image (Fischer et al.: over 85% and 97%).
suite_name = 'fischer2017'
description = 'Fischer et al. (2017): hiding persons, noise on the entire image and on person pixels only'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=32)
models = ['fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity', 'deeplabv2-aspp_r18-w16_synthcity']
_hide_person = dict(kind='hide_class', hidden_class=11)
attacks = [
    dict(type='targeted_ifgsm', num_steps=None, tau=None, target=_hide_person),
    dict(type='targeted_ifgsm', num_steps=None, tau=None, target=_hide_person, mask='hidden_class_posthoc'),
]
epsilons = [1, 2, 5, 10, 20, 40]
label_source = 'prediction'
batch_size = 8
seed = 0

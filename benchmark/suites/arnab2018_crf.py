# Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), Sec. 7 and Fig. 4: CRF-RNN and the FCN it
# is built on, on the built-in synthetic street scenes, over the ε grid: white-box FGSM, FGSM II,
# Iterative FGSM and Iterative FGSM II on both, and the same attacks computed on CRF-RNN's unaries
# (the network without its mean-field layer: dict(model=..., part='unaries'), declared by the
# CRF-RNN module) evaluated on CRF-RNN (Fig. 4b), and each model's examples on the other. Clean
# records hold the mean top-class probability and entropy of each model's prediction (their
# Sec. 7.1 compares 99.1 % / 0.025 nats for CRF-RNN with 95.2 % / 0.13 for its FCN).
# Cost: 11 min 42 s for the 194 cells (8 images, 1 thread, shared 2-core machine; CRF-RNN
# costs ten times an FCN per pass), peak memory 4.9 GB.
suite_name = 'arnab2018_crf'
description = 'Arnab et al. (2018) Fig. 4: CRF-RNN, its FCN and its unaries over the ε grid'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
_crf = 'crfrnn_r18-w16_synthcity'
_fcn = 'fcn_r18-w16_synthcity'
models = [_crf, _fcn]
sources = [_crf, dict(model=_crf, part='unaries'), _fcn]
targets = [_crf, _fcn]
attacks = [dict(type='fgsm'), dict(type='fgsm_ll'), dict(type='ifgsm'), dict(type='ifgsm_ll')]
epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
label_source = 'prediction'
batch_size = 8
seed = 0

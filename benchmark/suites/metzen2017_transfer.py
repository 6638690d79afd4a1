# Metzen et al. 2017 (https://arxiv.org/abs/1704.05712): a universal perturbation fitted on one
# model, carried to others (they carry FCN's to PSPNet-like networks in their discussion), on the
# built-in synthetic street scenes. The static-target universal perturbation (Table 1: one
# ground-truth map of the training split as the target of every image, ε = 10) is fitted on the
# FCN demo (60 steps over the 64 fitting images) and applied, unchanged, to the held-out images
# of every target; success rate = pixel accuracy against the static target.
# Cost: 3 min 13 s for the 12 cells, nearly all of it the fit (8 + 64 images, 1 thread, shared
# 2-core machine).
suite_name = 'metzen2017_transfer'
description = 'Metzen et al. (2017): a universal perturbation fitted on FCN, evaluated on five models'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
fit_dataset = dict(type='synthetic_cityscapes', split='train', seed=0, num_images=64)
_fcn = 'fcn_r18-w16_synthcity'
models = [_fcn, 'pspnet_r18-w16_synthcity', 'deeplabv2-aspp_r18-w16_synthcity', 'icnet_r18-w16_synthcity',
          'fcn8s_vgg16-w8_synthcity']
sources = [_fcn]
attacks = [dict(type='universal', target=dict(kind='static', split='train', index=0, source='ground_truth'))]
epsilons = [10]
label_source = 'prediction'
batch_size = 8
seed = 0

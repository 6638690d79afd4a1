# Poursaeed et al. 2018 (https://arxiv.org/abs/1712.02328), Table 4 ("fooling multiple networks"):
# one generator trained jointly on two models (the weighted sum of their fooling losses: an
# ensemble source, model_zoo.wrappers.EnsembleModel) and evaluated on both and on models it never
# saw, on the built-in synthetic street scenes. Non-targeted universal perturbation at ε = 10, the
# reduced ResNet generator of benchmark/suites/poursaeed2018.py, 20 epochs over the 64 fitting
# images (their segmentation code: 20 epochs).
# Cost: 2 min 27 s for the 10 cells, nearly all of it the generator's training (1 thread, shared
# 2-core machine).
suite_name = 'poursaeed2018_transfer'
description = 'Poursaeed et al. (2018) Table 4: a generator trained jointly on FCN and PSPNet, evaluated on five models'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
fit_dataset = dict(type='synthetic_cityscapes', split='train', seed=0, num_images=64)
_fcn, _psp = 'fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity'
models = [_fcn, _psp, 'deeplabv2-aspp_r18-w16_synthcity', 'icnet_r18-w16_synthcity', 'fcn8s_vgg16-w8_synthcity']
sources = [dict(ensemble=[_fcn, _psp], weights=[1, 1])]
attacks = [dict(type='gap', mode='universal', generator='resnet', ngf=16, n_blocks=3, epochs=20)]
epsilons = [10]
label_source = 'prediction'
batch_size = 8
seed = 0

# Arnab et al. 2018 (https://arxiv.org/abs/1711.09856), Table 1: transfer across scales, on the
# built-in synthetic street scenes. The sources are the multiscale-trained DeepLab v2 demo run on
# one scale (50 %, 75 %, 100 % of the image: its single 100 % branch on the resized image, logits
# resized back; the perturbation lives at full resolution and the gradient flows through the
# resizes: model_zoo.wrappers.ScaledModel) and the multiscale network itself. Rows (targets): the
# same four, then DeepLab v2 (VGG-16), FCN-8s (VGG-16) and FCN-8s (ResNet); FGSM and Iterative
# FGSM II at ε = 8; IoU ratio. Arnab et al.'s convention: "Deeplab v2 50% scale" is the
# multiscale-trained network evaluated at a single scale.
#
# Cost: 28 s for the 63 cells (8 images, 1 thread, shared 2-core machine), store 5 MB.
suite_name = 'arnab2018_table1'
description = 'Arnab et al. (2018) Table 1: transfer across scales (FGSM and Iterative FGSM II, ε = 8)'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
_msc = 'deeplabv2-aspp-msc_r18-w16_synthcity'
models = [_msc, 'deeplabv2-aspp_vgg16-w8_synthcity', 'fcn8s_vgg16-w8_synthcity', 'fcn8s_r18-w16_synthcity']
sources = [dict(model=_msc, scale=0.5), dict(model=_msc, scale=0.75), dict(model=_msc, scale=1), _msc]
targets = sources + ['deeplabv2-aspp_vgg16-w8_synthcity', 'fcn8s_vgg16-w8_synthcity',
                     'fcn8s_r18-w16_synthcity']
attacks = [dict(type='fgsm'), dict(type='ifgsm_ll')]
epsilons = [8]
label_source = 'prediction'
batch_size = 8
seed = 0

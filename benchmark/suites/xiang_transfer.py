# Xiang et al., "Adversarial Examples for Semantic Segmentation", Table 2: transfer between
# segmentation networks, on the built-in synthetic street scenes. Sources and targets: FCN-8s and
# FCN-16s (VGG-16) and the two ResNet FCN demos; MI-FGSM (μ = 1, 20 iterations) and PGD-20
# (α = ε / 20, random start) at ε = 8; 4 × 4 matrices of pixel accuracy (their metric) and mIoU.
# Cost: 53 s for the 36 cells (8 images, 1 thread, shared 2-core machine).
suite_name = 'xiang_transfer'
description = 'Xiang et al. Table 2: MI-FGSM and PGD-20 at ε = 8, transferred between four FCNs'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
models = ['fcn8s_vgg16-w8_synthcity', 'fcn16s_vgg16-w8_synthcity', 'fcn_r18-w16_synthcity',
          'fcn8s_r18-w16_synthcity']
sources = models
targets = models
attacks = [dict(type='mifgsm'), dict(type='pgd', num_steps=20)]
epsilons = [8]
label_source = 'prediction'
batch_size = 8
seed = 0

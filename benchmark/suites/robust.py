# Robust mIoU: the worst case per image over the white-box attacks (PGD-100, SegPGD-100, CosPGD-100,
# MI-FGSM; in the spirit of AutoAttack and SEA, Croce et al. 2024), against the ground truth, on the
# built-in synthetic street scenes.
suite_name = 'robust'
description = 'Worst case per image over PGD, SegPGD, CosPGD and MI-FGSM (robust mIoU)'
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=16)
models = ['fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity', 'deeplabv2-aspp_r18-w16_synthcity']
attacks = [dict(type='worst_case')]
epsilons = [2, 4, 8]
label_source = 'ground_truth'
batch_size = 8
seed = 0

# Robust mIoU: the worst case per image over SEA (Croce, Singh & Hein 2024, "Towards Reliable
# Evaluation and Fast Training of Robust Semantic Segmentation Models": APGD with the balanced masked
# cross-entropy, the masked cross-entropy and the Jensen-Shannon divergence, 300 iterations each on
# the 2ε / 1.5ε / ε radius schedule) plus the earlier members (PGD-100, SegPGD-100, CosPGD-100,
# MI-FGSM-20), against the ground truth, on the built-in synthetic street scenes. ε in 0-255 units:
# SEA's 4/255, 8/255 and 12/255 on [0, 1] images are 4, 8 and 12 here; 2 adds a weak threat.
#
# Per image, the kept adversarial image is the candidate (clean image first, then the members in
# this order) with the fewest correctly classified pixels; a member runs only on images with a
# correct pixel left. The records' per-image `info_chosen` says which candidate won (0 = clean,
# 1-3 = SEA's runs, 4-7 = PGD, SegPGD, CosPGD, MI-FGSM) and `info_gradient_passes` what each image
# cost.
#
# Cost and the reduction: 900 + 320 = 1220 forward+backward passes per image and ε (at most:
# skipped members and APGD's early stop only lower it). Measured on this 2-core machine, one torch
# thread, 4 images of 128 x 256: 0.040-0.045 s per image and pass for the three models below
# (APGD with the masked losses about 15 % above PGD's 0.037-0.039 s; tools/attack_strength.py
# prints the figure). The whole demo zoo (15 models, some several times slower) with 8 images
# would take over 7 hours, so this suite keeps three architectures and 8 images:
# 3 models x 8 images x 4 ε x 1220 passes = 117,120 image-passes x 0.045 s = 88 min on one
# process, about 45 min with two ranks (`tools/run_benchmark.py --nproc 2 benchmark/suites/robust.py`;
# batch_size 4 deals the two batches to the two ranks).
suite_name = 'robust'
description = ('Worst case per image over SEA (APGD: masked CE balanced, masked CE, JS) and PGD, '
               'SegPGD, CosPGD, MI-FGSM (robust mIoU)')
dataset = dict(type='synthetic_cityscapes', split='val', seed=0, num_images=8)
models = ['fcn_r18-w16_synthcity', 'pspnet_r18-w16_synthcity', 'deeplabv2-aspp_r18-w16_synthcity']
_sea_run = dict(type='apgd', num_steps=300, schedule='sea', track_loss='ce', random_start=True,
                keep='accuracy')
attacks = [
    dict(type='sea', attacks=[
        dict(_sea_run, loss='mask_ce_bal'),
        dict(_sea_run, loss='mask_ce_avg'),
        dict(_sea_run, loss='js'),
        dict(type='pgd', num_steps=100),
        dict(type='segpgd', num_steps=100),
        dict(type='cospgd', num_steps=100),
        dict(type='mifgsm'),
    ]),
]
epsilons = [2, 4, 8, 12]
label_source = 'ground_truth'
batch_size = 4
seed = 0

# FCN-32s demo initialised from the demo FCN-8s (model_zoo/weights/fcn8s_vgg16-w8_synthcity.pth;
# its VGG-16 backbone and fc7 scorer carry over, both skip scorers are dropped) and trained for 2k
# iterations, the stand-in for Long et al.'s fine-tuning from an ImageNet VGG-16. It reaches 44.4%
# clean val mIoU (37.1% after 1.5k iterations from scratch, 37.7% after 750 from this start at a
# peak rate of 1e-3): on 128×256 inputs its stride-32 score map is 4×8, too coarse for poles and
# signs, so it stays below the demo bar of 50% (known_issues in the metafile).
_base_ = ['./fcn32s_vgg16-w8_1.5k_synthcity-256x128.py']
load_from = 'model_zoo/weights/fcn8s_vgg16-w8_synthcity.pth'   # relative to the repository root
max_iters = 2000
optimizer = dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), weight_decay=1e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=20, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=20, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))

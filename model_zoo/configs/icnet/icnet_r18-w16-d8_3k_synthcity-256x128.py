# ICNet demo with a 3k-iteration schedule: at 1.5k iterations it reached 48.9% clean mIoU on the
# synthetic val split, just below the demo bar of 50%.
_base_ = ['./icnet_r18-w16-d8_1.5k_synthcity-256x128.py']
max_iters = 3000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=50, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=50, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))

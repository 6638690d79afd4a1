# Demo CRF-RNN trained as Zheng et al. (2015, Sec. 6) trained theirs: the network part starts from
# the trained FCN (here the demo FCN, model_zoo/weights/fcn_r18-w16-d8_synthcity.pth), the CRF from
# Potts compatibilities and the kernel settings below, and the whole network is then trained end to
# end (300 iterations here, at ~7 s each on 2 CPU cores: the mean field runs 5 iterations of
# permutohedral filtering per step).
_base_ = ['./crfrnn_r18-w16-d8_1.5k_synthcity-256x128.py']
load_from = 'model_zoo/weights/fcn_r18-w16-d8_synthcity.pth'   # relative to the repository root
max_iters = 300
optimizer = dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=1e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=dict(max_norm=5.0),
                     paramwise_cfg=dict(custom_keys={'crf.': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=20, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=20, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters), logger=dict(interval=20))

# E-Net (Paszke et al. 2016, https://arxiv.org/abs/1606.02147) at full width on Cityscapes (19
# classes): mmseg's Cityscapes pipeline (512x1024 crops) and 80k-iteration poly schedule, with the
# paper's optimiser (Adam, learning rate 5e-4, weight decay 2e-4).
_base_ = [
    '../_base_/models/enet.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))
optim_wrapper = dict(optimizer=dict(_delete_=True, type='Adam', lr=5e-4, weight_decay=2e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=80000, by_epoch=False)
]

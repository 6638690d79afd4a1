# CRF-RNN with an FCN-R50-D8 unary network on Cityscapes (19 classes), mmseg's FCN schedule.
# CRF parameters take no weight decay (they are few and their scale is meaningful).
_base_ = [
    '../_base_/models/crfrnn_r50-d8.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'crf.': dict(decay_mult=0.0)}))

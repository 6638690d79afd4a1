# CRF-RNN on Pascal VOC 2012 + SBD (21 classes, the paper's dataset; Arnab et al. 2018, Sec. 7
# evaluate the public VOC model). Unary network: FCN-R50-D8 (the paper's is VGG-16 FCN-8s).
_base_ = [
    '../_base_/models/crfrnn_r50-d8.py', 'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_20k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'crf.': dict(decay_mult=0.0)}))

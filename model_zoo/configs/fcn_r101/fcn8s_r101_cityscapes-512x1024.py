# FCN-8s skip head on ResNet-101-V1c (output stride 32; res3/res4/res5 play pool3/pool4/fc7) for the
# 19 Cityscapes classes (Arnab et al. 2018, "FCN8 (ResNet)"). Model-only config: to train it, add
# `mmseg::_base_/datasets/cityscapes.py`, a schedule and `../_base_/default_runtime.py` to
# `_base_` and set `pretrained='open-mmlab://resnet101_v1c'`.
_base_ = ['../_base_/models/fcn8s_r101.py']
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))

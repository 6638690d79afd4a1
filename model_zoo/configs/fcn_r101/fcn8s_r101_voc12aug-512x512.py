# FCN-8s skip head on ResNet-101-V1c for the 21 Pascal VOC classes (Arnab et al. 2018, Fig. 2 and
# Table 1, "FCN8 (ResNet)"). Model-only config: to train it, add
# `mmseg::_base_/datasets/pascal_voc12_aug.py`, a schedule and a runtime to `_base_`.
_base_ = ['../_base_/models/fcn8s_r101.py']
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=21))

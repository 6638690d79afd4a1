# Dilated-Net front-end (Yu & Koltun 2016, https://arxiv.org/abs/1511.07122) for the 19 Cityscapes
# classes (Arnab et al. 2018, "Dilated Front-end", Fig. 3): VGG-16 without pool4/pool5, conv5
# dilation 2, fc6 dilation 4, output stride 8. Normalisation of the released Cityscapes model
# (BGR mean pixel of fyu/dilation's dilation10_cityscapes). Model-only config: to train it, add
# `mmseg::_base_/datasets/cityscapes.py`, a schedule and `../_base_/default_runtime.py` to `_base_`.
_base_ = ['../_base_/models/dilatednet_vgg16.py']
crop_size = (512, 1024)
data_preprocessor = dict(mean=[72.39, 82.91, 73.16], size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))

# DeepLab v2 ASPP on ResNet-101-V1c, output stride 8 (Chen et al., https://arxiv.org/abs/1606.00915),
# single scale, 19 classes. Model-only config: to train it, add
# `mmseg::_base_/datasets/cityscapes.py`, a schedule and a runtime to `_base_`.
_base_ = ['../_base_/models/deeplabv2_r101.py']
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))

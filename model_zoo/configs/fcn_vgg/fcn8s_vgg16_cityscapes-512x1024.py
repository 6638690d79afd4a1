# FCN-8s on VGG-16 (Long et al. 2015, https://arxiv.org/abs/1411.4038) for the 19 Cityscapes
# classes, as evaluated by Arnab et al. 2018 ("FCN8 (VGG)", Fig. 3). Model-only config (the
# benchmark supplies the data): to train it, add mmseg's `mmseg::_base_/datasets/cityscapes.py`,
# a schedule and `../_base_/default_runtime.py` to `_base_`.
_base_ = ['../_base_/models/fcn8s_vgg16.py']
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))

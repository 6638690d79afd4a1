# Dilated-Net front-end (Yu & Koltun 2016, https://arxiv.org/abs/1511.07122) for the 21 Pascal VOC
# classes (the paper's main setting; Arnab et al. 2018, Fig. 2). Model-only config: to train it,
# add `mmseg::_base_/datasets/pascal_voc12_aug.py`, a schedule and a runtime to `_base_`.
_base_ = ['../_base_/models/dilatednet_vgg16.py']
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=21))

# DeepLab v2 "DeepLab-ASPP" on VGG-16 (Chen et al., https://arxiv.org/abs/1606.00915), single
# scale, 21 classes (Arnab et al. 2018: "Deeplab v2 100% scale (VGG)"). Model-only config: to
# train it, add `mmseg::_base_/datasets/pascal_voc12_aug.py`, a schedule and a runtime to `_base_`.
_base_ = ['../_base_/models/deeplabv2_vgg16.py']
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=21))

# DeepLab v2 "DeepLab-ASPP" on VGG-16 at 1/8 width (8 base channels; ASPP branches fc6 3x3 atrous
# rates 6/12/18/24 -> fc7 1x1 with 64 channels -> classes, summed), output stride 8, trained on the
# built-in synthetic data. Demo-size changes: batch norm after every convolution, no dropout,
# mmseg's RGB mean/std normalisation.
_base_ = [
    '../_base_/models/deeplabv2_vgg16.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 256)
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(base_channels=8, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=64, channels=64, dropout_ratio=0.0, norm_cfg=norm_cfg,
                     num_classes=19))

# DeepLab v2 ASPP (four 3x3 atrous class-score branches, rates 6/12/18/24, summed) on a
# ResNet-18-V1c at 1/4 width (16 base channels), output stride 8, single scale, trained on the
# built-in synthetic data: the demo-size counterpart of deeplabv2-aspp_r101-d8.
_base_ = [
    '../_base_/models/deeplabv2_r101.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(depth=18, stem_channels=16, base_channels=16),
    decode_head=dict(in_channels=128, num_classes=19))

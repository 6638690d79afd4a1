# FCN-8s skip head on a ResNet-18-V1c at 1/4 width (16 base channels, output stride 32; skips from
# the stride-8 and stride-16 stages), trained on the built-in synthetic data: the demo-size
# counterpart of FCN-8s on ResNet-101 (residual backbone, same head).
_base_ = [
    '../_base_/models/fcn8s_r101.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(depth=18, stem_channels=16, base_channels=16),
    decode_head=dict(in_channels=(32, 64, 128), num_classes=19))

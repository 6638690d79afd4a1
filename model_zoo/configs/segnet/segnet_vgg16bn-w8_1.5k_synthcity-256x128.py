# SegNet (Badrinarayanan et al. 2017) at 1/8 width (VGG-16-BN encoder widths 8-16-32-64-64, 0.46 M
# parameters instead of 29.4 M), trained on the built-in synthetic Cityscapes-layout data.
_base_ = [
    '../_base_/models/segnet.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(widen_factor=0.125),
    decode_head=dict(in_channels=8, channels=8, num_classes=19))

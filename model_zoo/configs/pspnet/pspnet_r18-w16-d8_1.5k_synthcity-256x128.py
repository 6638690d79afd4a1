# PSPNet (Zhao et al. 2017): pyramid pooling module on a ResNet-18-V1c backbone at 1/4 width,
# output stride 8, trained on the built-in synthetic data. Inherits mmseg's PSPNet-R50-D8 config.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(depth=18, stem_channels=16, base_channels=16, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=128, channels=32, norm_cfg=norm_cfg, num_classes=19),
    auxiliary_head=dict(in_channels=64, channels=32, norm_cfg=norm_cfg, num_classes=19))

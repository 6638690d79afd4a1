# ICNet (Zhao et al. 2018) on a ResNet-18-V1c backbone at 1/4 width: three cascaded resolution
# branches fused by cascade feature fusion, trained on the built-in synthetic data.
# Inherits mmseg's own ICNet-R50-D8 model config and changes only what differs.
_base_ = [
    'mmseg::_base_/models/icnet_r50-d8.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        backbone_cfg=dict(depth=18, stem_channels=16, base_channels=16, norm_cfg=norm_cfg),
        layer_channels=(32, 128),
        light_branch_middle_channels=16,
        psp_out_channels=64,
        out_channels=(32, 64, 64),
        norm_cfg=norm_cfg),
    neck=dict(in_channels=(32, 64, 64), out_channels=64, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=64, channels=64, norm_cfg=norm_cfg, num_classes=19),
    auxiliary_head=[
        dict(type='FCNHead', in_channels=64, channels=32, num_convs=1, num_classes=19, in_index=0,
             norm_cfg=norm_cfg, concat_input=False, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
        dict(type='FCNHead', in_channels=64, channels=32, num_convs=1, num_classes=19, in_index=1,
             norm_cfg=norm_cfg, concat_input=False, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    ])

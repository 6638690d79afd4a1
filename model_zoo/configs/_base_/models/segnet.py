# SegNet (Badrinarayanan et al. 2017, https://arxiv.org/abs/1511.00561) at the paper's width: the
# `SegNet` backbone is the VGG-16-BN encoder (13 convs, pooling indices kept) and the mirrored
# max-unpooling decoder; `SegNetHead` is the final 3x3 classifier conv at full resolution.
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='SegNet',
        in_channels=3,
        stage_channels=(64, 128, 256, 512, 512),
        stage_convs=(2, 2, 3, 3, 3),
        widen_factor=1.0,
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='SegNetHead',
        in_channels=64,
        channels=64,
        kernel_size=3,
        in_index=0,
        dropout_ratio=0.0,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

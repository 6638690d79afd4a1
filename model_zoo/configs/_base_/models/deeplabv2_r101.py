# DeepLab v2 ASPP on ResNet-101 (Chen et al., https://arxiv.org/abs/1606.00915): mmseg's
# ResNet-101-V1c with dilated res4/res5 (output stride 8) and four 3x3 atrous class-score branches
# (rates 6/12/18/24) summed. Single scale; configs/deeplabv2/*msc* wrap it in the multiscale
# (0.5, 0.75, 1.0) max-fusion segmentor. ImageNet weights: open-mmlab://resnet101_v1c (set
# `pretrained` to fine-tune; nothing is downloaded at build time).
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
        type='ResNetV1c',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='ASPPV2Head',
        in_channels=2048,
        in_index=3,
        num_convs=0,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.0,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

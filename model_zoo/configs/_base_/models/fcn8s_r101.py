# FCN-8s skip head (Long et al. 2015, https://arxiv.org/abs/1411.4038) on mmseg's ResNet-101-V1c
# (output stride 32): the res5 scores are fused with scored res4 (stride 16) and res3 (stride 8)
# features by 2x learned upsampling + sum, as FCN-8s does with fc7/pool4/pool3 (Arnab et al.'s
# "FCN8 (ResNet)"). ImageNet weights: open-mmlab://resnet101_v1c (set `pretrained` to fine-tune;
# nothing is downloaded at build time).
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
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='FCNSkipHead',
        in_channels=(512, 1024, 2048),
        in_index=(1, 2, 3),
        upsample='learned',
        dropout_ratio=0.1,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

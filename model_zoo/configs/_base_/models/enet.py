# E-Net (Paszke et al. 2016, https://arxiv.org/abs/1606.02147) at the paper's width: the `ENet`
# backbone (initial block, bottleneck stages 1-5 of Table 1) returns the decoder features at 1/2
# resolution and `ENetHead` is the final 2x2 transposed ("full") convolution to the input size.
# The three 2x poolings must divide the input exactly: test images are padded to a multiple of 8.
norm_cfg = dict(type='BN', eps=1e-3, requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    test_cfg=dict(size_divisor=8))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='ENet',
        in_channels=3,
        widen_factor=1.0,
        stage1_blocks=4,
        projection_ratio=4,
        dropout_ratios=(0.01, 0.1),
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='ENetHead',
        in_channels=16,
        channels=16,
        in_index=0,
        dropout_ratio=0.0,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# DeepLab v2 "DeepLab-ASPP" on VGG-16 (Chen et al., https://arxiv.org/abs/1606.00915): pool1-3
# 3x3/stride 2, pool4/pool5 3x3/stride 1, conv5 at dilation 2 (output stride 8), then four ASPP-v2
# branches fc6 (3x3, rates 6/12/18/24, 1024) -> fc7 (1x1, 1024) -> fc8 (classes), summed.
# Caffe normalisation (BGR minus DeepLab's mean pixel, std 1), so the public Caffe weights map by
# name (see model_zoo/models/deeplabv2.py). Single scale; the multiscale model is
# deeplabv2_r101's MultiScaleEncoderDecoder variant.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[104.008, 116.669, 122.675],   # BGR
    std=[1.0, 1.0, 1.0],
    bgr_to_rgb=False,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='VGG16',
        base_channels=64,
        num_convs=(2, 2, 3, 3, 3),
        dilations=(1, 1, 1, 1, 2),
        pools=((3, 2), (3, 2), (3, 2), (3, 1), (3, 1)),
        fc_channels=(),           # fc6/fc7 are per-branch, in the head
        out_indices=(4, )),       # pool5
    decode_head=dict(
        type='ASPPV2Head',
        in_channels=512,
        in_index=0,
        channels=1024,
        num_convs=2,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.5,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

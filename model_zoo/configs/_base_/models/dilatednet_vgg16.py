# Dilated-Net front-end (Yu & Koltun 2016, https://arxiv.org/abs/1511.07122): VGG-16 with pool4
# and pool5 removed, conv5 at dilation 2, fc6 (7x7) at dilation 4 -> output stride 8, and the 1x1
# classifier `final`. Configs with `context_dilations` add the context module. Caffe
# normalisation with the released Pascal VOC model's mean pixel (BGR, std 1); the Cityscapes
# configs override the mean. Caffe names map one-to-one (model_zoo/models/dilated_net.py).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[102.93, 111.36, 116.52],   # BGR (fyu/dilation, Pascal VOC)
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
        pools=((2, 2), (2, 2), (2, 2), None, None),
        fc_channels=(4096, 4096),
        fc6_kernel_size=7,
        fc6_dilation=4,
        fc_dropout=0.5,
        out_indices=(5, )),       # fc7
    decode_head=dict(
        type='DilatedContextHead',
        in_channels=4096,
        in_index=0,
        context_dilations=(),     # front-end only
        dropout_ratio=0.0,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

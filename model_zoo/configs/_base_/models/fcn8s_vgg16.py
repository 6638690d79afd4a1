# FCN-8s (Long et al. 2015, https://arxiv.org/abs/1411.4038) on VGG-16: fc7, pool4 and pool3
# scored and fused by 2x learned (bilinear-initialised) upsampling + sum; output stride 8.
# FCN-16s / FCN-32s configs select fewer inputs of the same head. Normalisation is the Caffe one
# (BGR, minus FCN's mean pixel, std 1) so the public Caffe weights map one-to-one
# (model_zoo/models/vgg.py and fcn_vgg.py list the key names). No weights are downloaded at build.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[104.00698793, 116.66876762, 122.67891434],   # BGR
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
        dilations=(1, 1, 1, 1, 1),
        pools=((2, 2), (2, 2), (2, 2), (2, 2), (2, 2)),
        fc_channels=(4096, 4096),
        fc6_kernel_size=7,
        fc6_dilation=1,
        fc_dropout=0.5,
        out_indices=(2, 3, 5)),  # pool3, pool4, fc7
    decode_head=dict(
        type='FCNSkipHead',
        in_channels=(256, 512, 4096),
        in_index=(0, 1, 2),
        upsample='learned',
        dropout_ratio=0.0,       # drop6/drop7 are in the backbone
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

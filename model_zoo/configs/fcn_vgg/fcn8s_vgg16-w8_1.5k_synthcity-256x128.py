# FCN-8s (Long et al. 2015) on VGG-16 at 1/8 width (8 base channels, fc6/fc7 with 128 channels),
# trained from scratch on the built-in synthetic Cityscapes-layout data. Demo-size changes: batch
# norm after every convolution (as torchvision's vgg16_bn; plain VGG-16 does not train well from
# scratch in 1.5k iterations), no fc dropout, and mmseg's RGB mean/std normalisation instead of
# the Caffe mean pixel. The skip structure, 7x7 fc6 and learned bilinear-initialised upsampling
# are the full model's.
_base_ = [
    '../_base_/models/fcn8s_vgg16.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 256)
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(base_channels=8, fc_channels=(128, 128), fc_dropout=0.0, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=(32, 64, 128), num_classes=19))

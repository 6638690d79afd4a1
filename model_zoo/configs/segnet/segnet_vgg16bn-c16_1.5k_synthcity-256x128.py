# SegNet (Badrinarayanan et al. 2017) reduced for the demo: VGG-16-BN encoder widths 16-32-32-64-64
# (instead of 64-128-256-512-512; 0.5 M parameters instead of 29.4 M) and the mirrored max-unpooling
# decoder, trained on the built-in synthetic Cityscapes-layout data. A uniform 1/8 width
# (8-16-32-64-64) reached only 25.5% clean val mIoU with a training loss twice FCN-8s's: SegNet
# classifies every pixel from the last decoder stage's features at full resolution, and 8 channels
# there cannot carry 13 classes. 16 channels in the first stage (and 32 in the second) remove
# that bottleneck; the deeper stages keep the 1/8-width FCN-8s encoder's widths.
_base_ = [
    '../_base_/models/segnet.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(stage_channels=(16, 32, 32, 64, 64)),
    decode_head=dict(in_channels=16, channels=16, num_classes=19))

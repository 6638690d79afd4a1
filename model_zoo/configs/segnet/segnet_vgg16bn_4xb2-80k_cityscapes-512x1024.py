# SegNet (Badrinarayanan et al. 2017, https://arxiv.org/abs/1511.00561) at full width (29.4 M
# parameters) on Cityscapes (19 classes), with mmseg's Cityscapes pipeline (512x1024 crops) and
# 80k-iteration SGD + poly schedule.
_base_ = [
    '../_base_/models/segnet.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))

# E-Net (Paszke et al. 2016) at the paper's full width (0.36 M parameters: already small enough for
# the CPU demo), trained on the built-in synthetic Cityscapes-layout data.
_base_ = [
    '../_base_/models/enet.py',
    '../_base_/datasets/synthetic_cityscapes.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_cpu.py',
]
crop_size = (128, 256)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))

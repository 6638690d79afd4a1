# FCN-32s on VGG-16 (Long et al. 2015, https://arxiv.org/abs/1411.4038): the FCN-8s config with
# fc7 scored only, no skips (stride 32). Model-only config (see fcn8s_vgg16_cityscapes-512x1024.py).
_base_ = ['./fcn8s_vgg16_cityscapes-512x1024.py']
model = dict(decode_head=dict(in_channels=(4096, ), in_index=(2, )))

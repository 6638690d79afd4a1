# FCN-16s on VGG-16 (Long et al. 2015, https://arxiv.org/abs/1411.4038): the FCN-8s config with
# fc7 and pool4 scored and fused (stride 16). Model-only config (see fcn8s_vgg16_cityscapes-512x1024.py).
_base_ = ['./fcn8s_vgg16_cityscapes-512x1024.py']
model = dict(decode_head=dict(in_channels=(512, 4096), in_index=(1, 2)))

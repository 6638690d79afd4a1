# Dilated-Net front-end + basic context module as released for Cityscapes (fyu/dilation
# "dilation10": nine identity-initialised 3x3 layers with dilations 1, 1, 2, 4, 8, 16, 32, 64, 1
# plus a 1x1, all 19 channels). Arnab et al. 2018, "Dilated Context", Fig. 3.
_base_ = ['./dilatednet-front_vgg16-d8_cityscapes-512x1024.py']
model = dict(decode_head=dict(context_dilations=(1, 1, 2, 4, 8, 16, 32, 64, 1)))

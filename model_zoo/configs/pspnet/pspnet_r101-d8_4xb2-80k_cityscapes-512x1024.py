# PSPNet (Zhao et al. 2017, https://arxiv.org/abs/1612.01105) with mmseg's ResNet-101-V1c-D8 on
# Cityscapes (19 classes; slide inference with 512x1024 windows), as evaluated by Arnab et al. 2018
# (Sec. 4-5). mmseg's config unchanged.
_base_ = 'mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py'

# The multiscale-trained DeepLab v2 (ResNet-101) evaluated at a single input scale of 75%: the
# network sees the image resized to 75%, its logits are upsampled back to the image. Same weights
# as deeplabv2-aspp-msc_r101-d8_voc12aug-512x512.py (Arnab et al. 2018, Table 1 row
# "Deeplab v2 75% scale (ResNet)").
_base_ = ['./deeplabv2-aspp-msc_r101-d8_voc12aug-512x512.py']
model = dict(test_scales=(0.75, ))

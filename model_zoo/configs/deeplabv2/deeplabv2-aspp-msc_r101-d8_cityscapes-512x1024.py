# DeepLab v2 with multiscale inputs ("MSc", Chen et al., https://arxiv.org/abs/1606.00915) on
# ResNet-101-V1c: the same network on the input at 50%, 75% and 100%, logits upsampled to the 100%
# branch and max-fused per pixel; trained with a loss on every scale and on the fused output.
# Arnab et al. 2018's most robust model ("Deeplab v2 Multiscale (ResNet)"). 19 classes.
_base_ = ['./deeplabv2-aspp_r101-d8_cityscapes-512x1024.py']
model = dict(type='MultiScaleEncoderDecoder', scales=(0.5, 0.75, 1.0), fusion='max')

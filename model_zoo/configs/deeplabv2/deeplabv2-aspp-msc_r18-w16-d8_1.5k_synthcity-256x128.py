# Multiscale DeepLab v2 (MSc: shared weights on the input at 50/75/100%, max fusion, loss on every
# scale and on the fused output) on a ResNet-18-V1c at 1/4 width, trained on the built-in
# synthetic data. A training step costs ~1.8x the single-scale model's (1 + 0.75^2 + 0.5^2).
_base_ = ['./deeplabv2-aspp_r18-w16-d8_1.5k_synthcity-256x128.py']
model = dict(type='MultiScaleEncoderDecoder', scales=(0.5, 0.75, 1.0), fusion='max')

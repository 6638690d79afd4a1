# Dilated-Net front-end + the paper's 8-layer basic context module (identity-initialised 3x3
# convolutions, dilations 1, 1, 2, 4, 8, 16, 1, then 1x1; 19 channels) on the 1/8-width VGG-16
# front-end, trained end to end on the built-in synthetic data (the paper trains the front-end
# first, then the context module; here both are trained jointly from scratch).
_base_ = ['./dilatednet-front_vgg16-w8-d8_1.5k_synthcity-256x128.py']
model = dict(decode_head=dict(context_dilations=(1, 1, 2, 4, 8, 16, 1)))

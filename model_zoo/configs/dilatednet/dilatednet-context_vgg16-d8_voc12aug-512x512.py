# Dilated-Net front-end + the 8-layer basic context module of the paper (Table 1; fyu/dilation
# "dilation8_pascal_voc"): identity-initialised 3x3 convolutions with dilations 1, 1, 2, 4, 8, 16, 1
# and a final 1x1, all 21 channels. For the "large" module set
# context_multipliers=(2, 2, 4, 8, 16, 32, 32).
_base_ = ['./dilatednet-front_vgg16-d8_voc12aug-512x512.py']
model = dict(decode_head=dict(context_dilations=(1, 1, 2, 4, 8, 16, 1)))

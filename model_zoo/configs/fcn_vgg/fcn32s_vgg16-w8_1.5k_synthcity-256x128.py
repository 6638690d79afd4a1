# FCN-32s (Long et al. 2015) on VGG-16 at 1/8 width, trained on the built-in synthetic data: the
# FCN-8s demo config with the head scoring fc7 only (stride 32).
_base_ = ['./fcn8s_vgg16-w8_1.5k_synthcity-256x128.py']
model = dict(decode_head=dict(in_channels=(128, ), in_index=(2, )))

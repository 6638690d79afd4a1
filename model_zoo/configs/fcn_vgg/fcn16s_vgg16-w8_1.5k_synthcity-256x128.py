# FCN-16s (Long et al. 2015) on VGG-16 at 1/8 width, trained on the built-in synthetic data: the
# FCN-8s demo config with the head scoring fc7 and pool4 (stride 16).
_base_ = ['./fcn8s_vgg16-w8_1.5k_synthcity-256x128.py']
model = dict(decode_head=dict(in_channels=(64, 128), in_index=(1, 2)))

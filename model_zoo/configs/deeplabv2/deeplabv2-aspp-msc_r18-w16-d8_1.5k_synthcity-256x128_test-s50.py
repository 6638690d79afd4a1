# The multiscale-trained demo DeepLab v2 evaluated at a single input scale of 50% (Arnab et al.
# 2018, Table 1 rows). Same weights as deeplabv2-aspp-msc_r18-w16-d8_1.5k_synthcity-256x128.py:
# do not train this config separately.
_base_ = ['./deeplabv2-aspp-msc_r18-w16-d8_1.5k_synthcity-256x128.py']
model = dict(test_scales=(0.5, ))

# Demo CRF-RNN: exactly the demo FCN (ResNet-18-V1c at 1/4 width, output stride 8, same data and
# schedule) with the CRF-RNN mean-field layer on its logits, trained end to end, so the demo zoo
# compares FCN with and without the CRF. CRF settings: the public CRF-RNN model's (see
# ../_base_/models/crfrnn_r50-d8.py); the crf dict is repeated here because mmengine does not
# allow two _base_ files to both define `model`.
_base_ = ['../fcn/fcn_r18-w16-d8_1.5k_synthcity-256x128.py']
model = dict(
    type='CRFRNN',
    crf=dict(
        type='MeanFieldCRF',
        num_iter_train=5,
        num_iter_test=10,
        theta_alpha=160.0,
        theta_beta=3.0,
        theta_gamma=3.0,
        spatial_weight=3.0,
        bilateral_weight=5.0,
        compatibility='potts',
        normalization='mean',
        spatial_filter='lattice'))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'crf.': dict(decay_mult=0.0)}))

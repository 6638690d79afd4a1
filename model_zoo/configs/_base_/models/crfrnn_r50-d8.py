# CRF-RNN (Zheng et al. 2015, https://arxiv.org/abs/1502.03240): a unary network followed by
# mean-field inference of a dense CRF unrolled as recurrent layers (model_zoo/models/crf_rnn.py).
# The paper's unary network is VGG-16 FCN-8s; here it is mmseg's FCN head on a dilated ResNet-50
# (any decode head works). CRF settings are the public model's deploy prototxt
# (torrvision/crfasrnn, python-scripts/TVG_CRFRNN_new_deploy.prototxt, multi_stage_meanfield_param):
# theta_alpha 160, theta_beta 3, theta_gamma 3, spatial / bilateral filter weights 3 / 5,
# compatibility POTTS (-I); 5 mean-field iterations in training, 10 at test time.
_base_ = 'mmseg::_base_/models/fcn_r50-d8.py'
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

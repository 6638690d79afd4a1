# ICNet (Zhao et al. 2018, https://arxiv.org/abs/1704.08545), mmseg's ResNet-50-V1c-D8
# implementation on Cityscapes (19 classes), evaluated by Arnab et al. 2018 (Sec. 4-5). mmseg's
# config unchanged: its checkpoints icnet_r50-d8_832x832_160k_cityscapes and the ImageNet-initialised
# icnet_r50-d8_in1k-pre_832x832_160k_cityscapes share this architecture (the pretraining only
# changes the initialisation, which model_zoo.builder drops anyway).
_base_ = 'mmseg::icnet/icnet_r50-d8_4xb2-160k_cityscapes-832x832.py'

# Arnab et al. (2018), Sec. 4-5 on Cityscapes val (500 images resized to 1024x512): the four
# attacks over the full ε grid. Point data_root at your Cityscapes copy (with *_labelTrainIds.png)
# and list the models (zoo names, or dict(name=..., config=..., checkpoint=...) for your own).
suite_name = 'arnab2018_cityscapes'
dataset = dict(type='cityscapes', data_root='data/cityscapes', split='val', resize=(1024, 512))
models = [
    dict(name='pspnet_r50-d8_cityscapes',
         config='mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
         checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r50-d8_512x1024_40k_cityscapes/pspnet_r50-d8_512x1024_40k_cityscapes_20200605_003338-2966598c.pth'),
]
attacks = [dict(type='fgsm'), dict(type='fgsm_ll'), dict(type='ifgsm'), dict(type='ifgsm_ll')]
epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
label_source = 'prediction'
batch_size = 1

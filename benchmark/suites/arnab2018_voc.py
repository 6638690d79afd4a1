# Arnab et al. (2018), Sec. 4-5 on Pascal VOC 2012: the reduced validation set of 346 images
# (pass its id list as image_list) and the four attacks over the full ε grid.
suite_name = 'arnab2018_voc'
dataset = dict(type='voc', data_root='data/VOCdevkit/VOC2012', split='val',
               image_list='ImageSets/Segmentation/val_reduced_346.txt')
models = [
    dict(name='deeplabv3_r50-d8_voc',
         config='mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
         checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r50-d8_512x512_20k_voc12aug/deeplabv3_r50-d8_512x512_20k_voc12aug_20200617_010906-596905ef.pth'),
]
attacks = [dict(type='fgsm'), dict(type='fgsm_ll'), dict(type='ifgsm'), dict(type='ifgsm_ll')]
epsilons = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
label_source = 'prediction'
batch_size = 1

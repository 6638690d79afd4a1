"""VGG-16 backbone (model_zoo/models/vgg.py): strides per variant, fc6 options, weight name maps."""
import pytest
import torch
import torch.nn.functional as F

import model_zoo.models.vgg  # noqa: F401  (registers VGG16)
from model_zoo.models.vgg import (TORCHVISION_VGG16_CONV_INDICES, VGG16, caffe_vgg16_key_map,
                                  convert_torchvision_vgg16, vgg_conv_names)

#: torchvision vgg16 has 138,357,544 parameters; without the 1000-way classifier (4096*1000 + 1000)
VGG16_FULLY_CONV = 138_357_544 - 4_097_000


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(base_channels=4, fc_channels=(16, 16), fc_dropout=0.0, out_indices=(0, 1, 2, 3, 4, 5))
    cfg.update(kw)
    return VGG16(**cfg).eval()


def test_full_size_parameter_count_is_vgg16():
    with torch.device('meta'):
        net = VGG16()
    assert sum(p.numel() for p in net.parameters()) == VGG16_FULLY_CONV
    assert net.fc6.conv.weight.shape == (4096, 512, 7, 7) and net.fc7.conv.weight.shape == (4096, 4096, 1, 1)
    assert net.stage_channels == (64, 128, 256, 512, 512)


def test_fcn_layout_strides_and_channels():
    net = tiny()
    outs = net(torch.randn(1, 3, 64, 96))
    assert [o.shape[-2:] for o in outs] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3), (2, 3)]
    assert [o.shape[1] for o in outs] == [4, 8, 16, 32, 32, 16]
    # odd sizes: floor pooling, every map half of the previous one (rounded down)
    outs = net(torch.randn(1, 3, 67, 101))
    assert [tuple(o.shape[-2:]) for o in outs[:5]] == [(33, 50), (16, 25), (8, 12), (4, 6), (2, 3)]


def test_dilated_net_and_deeplab_layouts_have_stride_8():
    front = tiny(pools=((2, 2),) * 3 + (None, None), dilations=(1, 1, 1, 1, 2), fc6_dilation=4)
    assert not hasattr(front, 'pool4') and not hasattr(front, 'pool5')
    assert front.conv5_2.conv.dilation == (2, 2) and front.conv5_2.conv.padding == (2, 2)
    assert front.fc6.conv.dilation == (4, 4) and front.fc6.conv.padding == (12, 12)
    outs = front(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 48), (16, 24), (8, 12), (8, 12), (8, 12), (8, 12)]

    deeplab = tiny(pools=((3, 2),) * 3 + ((3, 1),) * 2, dilations=(1, 1, 1, 1, 2), fc_channels=(),
                   out_indices=(4,))
    assert not deeplab.with_fc and deeplab.pool4.stride == 1 and deeplab.pool1.kernel_size == 3
    (pool5,) = deeplab(torch.randn(1, 3, 64, 96))
    assert pool5.shape[-2:] == (8, 12)

    largefov = tiny(fc6_kernel_size=3, fc6_dilation=12, pools=((3, 2),) * 3 + ((3, 1),) * 2,
                    dilations=(1, 1, 1, 1, 2), out_indices=(5,))
    assert largefov.fc6.conv.kernel_size == (3, 3) and largefov.fc6.conv.padding == (12, 12)
    assert largefov(torch.randn(1, 3, 64, 96))[0].shape[-2:] == (8, 12)


def test_early_exit_when_fc7_not_requested():
    net = tiny(out_indices=(2,))
    calls = []
    net.fc6.register_forward_hook(lambda *a: calls.append(1))
    (pool3,) = net(torch.randn(1, 3, 32, 32))
    assert pool3.shape == (1, 16, 4, 4) and calls == []


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match='out_indices'):
        VGG16(base_channels=2, fc_channels=(), out_indices=(5,))
    with pytest.raises(ValueError, match='one entry per stage'):
        VGG16(base_channels=2, dilations=(1, 1))
    with pytest.raises(ValueError, match='fc_channels'):
        VGG16(base_channels=2, fc_channels=(8,))


def test_norm_cfg_adds_batch_norm_and_dropout_is_train_only():
    net = tiny(norm_cfg=dict(type='BN'), fc_dropout=0.5)
    assert isinstance(net.conv3_3.bn, torch.nn.BatchNorm2d)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net(x)[-1], net(x)[-1])   # eval: deterministic
    net.train()
    assert not torch.equal(net(x)[-1], net(x)[-1])


def test_caffe_key_map_covers_every_parameter():
    net = tiny()
    prefixes = {k.rsplit('.', 1)[0] for k in net.state_dict()}
    assert set(caffe_vgg16_key_map(prefix='').values()) == prefixes
    assert caffe_vgg16_key_map()['conv5_3'] == 'backbone.conv5_3.conv'
    assert vgg_conv_names()[-1] == 'conv5_3' and len(vgg_conv_names()) == 13


def test_torchvision_conversion_loads_and_fc6_equals_the_linear_layer():
    net = tiny(fc_channels=(16, 16))
    g = torch.Generator().manual_seed(1)
    tv = {}
    convs = [getattr(net, n).conv for n in vgg_conv_names()]
    for idx, conv in zip(TORCHVISION_VGG16_CONV_INDICES, convs):
        tv[f'features.{idx}.weight'] = torch.randn(conv.weight.shape, generator=g)
        tv[f'features.{idx}.bias'] = torch.randn(conv.bias.shape, generator=g)
    tv['classifier.0.weight'] = torch.randn(16, 32 * 7 * 7, generator=g)   # Linear(512*7*7, 4096) layout
    tv['classifier.0.bias'] = torch.randn(16, generator=g)
    tv['classifier.3.weight'] = torch.randn(16, 16, generator=g)
    tv['classifier.3.bias'] = torch.randn(16, generator=g)
    tv['classifier.6.weight'] = torch.randn(10, 16, generator=g)          # ImageNet head: dropped
    tv['classifier.6.bias'] = torch.randn(10, generator=g)
    net.load_state_dict(convert_torchvision_vgg16(tv, net), strict=True)
    assert torch.equal(net.conv1_1.conv.weight, tv['features.0.weight'])
    assert torch.equal(net.conv5_3.conv.bias, tv['features.28.bias'])
    # fc6 on a 7x7 pool5 map: the centre output sees the whole map, exactly like the Linear layer
    pool5 = torch.randn(1, 32, 7, 7, generator=g)
    conv_out = net.fc6.conv(pool5)[0, :, 3, 3]
    linear_out = F.linear(pool5.flatten(1), tv['classifier.0.weight'], tv['classifier.0.bias'])[0]
    torch.testing.assert_close(conv_out, linear_out, rtol=1e-4, atol=1e-4)
    assert set(convert_torchvision_vgg16(tv, net, prefix='backbone.')) == {
        f'backbone.{k}' for k in net.state_dict()}
    with pytest.raises(ValueError, match='cannot become'):
        convert_torchvision_vgg16(tv, tiny(fc_channels=(8, 8)))

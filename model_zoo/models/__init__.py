"""This project's architectures, registered in mmseg's ``MODELS`` registry on import.

(Importing this package only registers classes; it does not change mmengine's default scope.)
"""
from . import (crf_rnn, deeplabv2, dilated_net, enet, fcn_vgg, multiscale,  # noqa: F401
               permutohedral, segnet, vgg)

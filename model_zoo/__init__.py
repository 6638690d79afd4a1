"""Model zoo: the pixel-space wrapper, config/checkpoint loading and model metadata."""
from .pixel_model import PixelSpaceModel

__all__ = ['PixelSpaceModel']

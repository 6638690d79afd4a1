"""This project's architectures, registered in mmseg's ``MODELS`` registry on import.

(Importing this package only registers classes; it does not change mmengine's default scope.)
"""

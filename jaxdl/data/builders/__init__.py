"""Offline TFDS builders. Importing this package registers them with tfds under their names."""
from jaxdl.data.builders.digits import Digits
from jaxdl.data.builders.rotated_digits import RotatedDigits
from jaxdl.data.builders.shapes import Shapes

BUILTIN = {'digits': Digits, 'rotated_digits': RotatedDigits, 'shapes': Shapes}

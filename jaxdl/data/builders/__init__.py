"""Offline TFDS builders. Importing this package registers them with tfds under their names."""
from jaxdl.data.builders.digits import Digits

BUILTIN = {'digits': Digits}

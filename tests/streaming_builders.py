"""`jpeg_shapes` at the small scales the streaming tests read (the same drawing code and ArrayRecord files), and one
with a damaged JPEG. Named by import path, e.g. 'streaming_builders:TinyJpegShapes' (tests/ is on the path)."""
import io

from jaxdl.data.builders.jpeg_shapes import JpegShapes


class TinyJpegShapes(JpegShapes):
    """Many tiny images: long epochs for the sampler's tests, cheap to prepare."""
    SPLIT_SIZES = {'train': 2000, 'validation': 50, 'test': 70}
    SIDES = (16, 24)


class MemoryJpegShapes(JpegShapes):
    """The peak-memory test's 1x ..."""
    SPLIT_SIZES = {'train': 300, 'validation': 10, 'test': 10}
    SIDES = (64, 64)


class MemoryJpegShapesX10(MemoryJpegShapes):
    """... and 10x."""
    SPLIT_SIZES = {'train': 3000, 'validation': 10, 'test': 10}


class CorruptJpegShapes(JpegShapes):
    """Training example '0_7' holds the first third of its JPEG file only."""
    SPLIT_SIZES = {'train': 64, 'validation': 16, 'test': 16}
    SIDES = (32, 40)
    CORRUPT_KEY = '0_7'

    def _generate_examples(self, split_index: int, count: int):
        for key, example in super()._generate_examples(split_index, count):
            if key == self.CORRUPT_KEY:
                data = example['image'].getvalue()
                example = {**example, 'image': io.BytesIO(data[:len(data) // 3])}
            yield key, example

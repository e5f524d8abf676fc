"""Writes scikit-learn's 1,797 handwritten digits as an image folder, the layout a researcher's own data comes in:

    python experiments/custom/export_digit_folder.py runs/digit_folder
    jaxdl train experiments/custom/digit_folder.py

one subfolder per class (`zero` .. `nine`), each image upscaled to a random size between 16 and 40 pixels and
saved as PNG or JPEG, grey, with one in five in colour: what `folder:PATH` must take as it comes.
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')


def export(out: Path, seed: int = 0) -> int:
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        image = Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8))
        side = int(rng.integers(16, 41))
        image = image.resize((side, side), Image.Resampling.BILINEAR)
        if rng.random() < 0.2:
            image = Image.merge('RGB', [image, image, image.point(lambda v: v // 2)])
        folder = out / NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f'{index:04d}.{"jpg" if rng.random() < 0.5 else "png"}')
    return len(digits.target)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out', nargs='?', default='runs/digit_folder', type=Path)
    args = parser.parse_args()
    print(f'wrote {export(args.out)} images to {args.out}')

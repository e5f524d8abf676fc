"""`dataset.name='folder:PATH'`: a folder of the user's images, one subfolder per class, as a TFDS dataset.

Two layouts:

    PATH/train/<class>/*.png, PATH/validation/<class>/..., PATH/test/<class>/...   the splits as given
    PATH/<class>/*.jpg                                                            split per class by the seeded
                                                                                  shares dataset.split_fractions

PNG and JPEG of any size (the pipeline resizes to dataset.image_size), grey or colour: if every image is grey
the dataset has one channel, otherwise three (grey images are converted). The split layout is read by TFDS's own
`tfds.folder_dataset.ImageFolder`; the other, which ImageFolder cannot split, is listed here.

The folder is checked whole before anything trains (a class without images, an image that does not decode: an
error naming it) and then prepared once into the data dir as an ordinary TFDS dataset, so it has what every
dataset has: sub-splits, per-process shares, the data-contract checks. Its name there carries a fingerprint of the
folder's files (paths, sizes, modification times) and of the split settings: a changed folder is prepared again,
never read stale.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np

from jaxdl.errors import DatasetNotAvailable
from jaxdl.logging import display_path

SPLITS = ('train', 'validation', 'test')
EXTENSIONS = ('.png', '.jpg', '.jpeg')
GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'F')


def _images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith('.'))


def scan(root: Path, label: str) -> tuple[str, dict[str, dict[str, list[Path]]]]:
    """(layout, {split or '': {class: [image paths]}}), or a DatasetNotAvailable naming what is wrong."""
    if not root.is_dir():
        raise DatasetNotAvailable(f'{label}: {root} is not a directory')
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    layout = 'splits' if split_dirs else 'classes'
    groups = {d.name: d for d in split_dirs} if split_dirs else {'': root}
    found: dict[str, dict] = {}
    for split, directory in groups.items():
        classes = _class_dirs(directory)
        if not classes:
            where = f'{directory}' + (' (a split folder)' if split else '')
            raise DatasetNotAvailable(
                f"{label}: {where} has no class subfolders; put each class's images in a folder of its own: "
                f'{root}/<class>/*.png, or {root}/train/<class>/*.png with validation/ and test/ beside train/'
            )
        found[split] = {}
        for class_dir in classes:
            images = _images(class_dir)
            if not images:
                raise DatasetNotAvailable(
                    f'{label}: the class folder {class_dir} has no PNG or JPEG images; add some or remove the folder'
                )
            found[split][class_dir.name] = images
    if layout == 'splits':
        names = [sorted(classes) for classes in found.values()]
        if any(n != names[0] for n in names):
            raise DatasetNotAvailable(
                f'{label}: the split folders hold different classes ('
                + '; '.join(f'{s}: {", ".join(sorted(c))}' for s, c in found.items())
                + ')'
            )
    return layout, found


def check_images(files: list[Path], label: str) -> int:
    """Decodes every image once; returns the channel count the dataset gets (1 if all are grey, else 3)."""
    from PIL import Image

    grey = True
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                grey = grey and image.mode in GREY_MODES
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError ... for damaged files
            raise DatasetNotAvailable(
                f'{label}: cannot read the image {path} ({type(e).__name__}: {e}); replace or remove it'
            ) from None
    return 1 if grey else 3


def fingerprint(files: list[Path], root: Path, *parts) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f'{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
    digest.update(repr(parts).encode())
    return digest.hexdigest()[:12]


def split_by_fractions(classes: dict[str, list[Path]], fractions, seed: int) -> dict[str, list[tuple[Path, str]]]:
    """Each class's images, in a seeded order, cut into train/validation/test by `fractions` (so every split keeps
    the class balance); a class too small for a share gets none of it rather than a rounding's worth."""
    out: dict[str, list] = {s: [] for s in SPLITS}
    for index, (name, files) in enumerate(sorted(classes.items())):
        order = np.random.default_rng([seed, index]).permutation(len(files))
        n_train = int(round(fractions[0] * len(files)))
        n_validation = int(round(fractions[1] * len(files)))
        cuts = {
            'train': order[:n_train],
            'validation': order[n_train : n_train + n_validation],
            'test': order[n_train + n_validation :],
        }
        for split, picked in cuts.items():
            out[split].extend((files[i], name) for i in sorted(picked))
    return out


def prepared_builder(path: str, dataset_cfg, data_dir: str):
    """The folder as a prepared TFDS builder in `data_dir` (prepared now if this version of it is not there)."""
    import tensorflow_datasets as tfds

    label = f"dataset.name 'folder:{path}'"
    root = Path(path).expanduser().absolute()
    layout, found = scan(root, label)
    files = [f for classes in found.values() for images in classes.values() for f in images]
    channels = check_images(files, label)
    fractions, seed = tuple(float(f) for f in dataset_cfg.split_fractions), int(dataset_cfg.split_seed)
    version_key = fingerprint(files, root, layout, channels, fractions if layout == 'classes' else None, seed)
    name = 'folder_' + (re.sub(r'[^a-z0-9]+', '_', root.name.lower()).strip('_') or 'images')
    class_names = sorted(next(iter(found.values())))
    features = tfds.features.FeaturesDict(
        {
            'image': tfds.features.Image(shape=(None, None, channels)),
            'label': tfds.features.ClassLabel(names=class_names),
            'image/filename': tfds.features.Text(),
        }
    )
    from tensorflow_datasets.core.dataset_builders import adhoc_builder

    prepared = Path(data_dir) / name / version_key / '1.0.0'
    if (prepared / 'dataset_info.json').is_file():  # prepared before (tfds writes it last)
        return tfds.builder_from_directory(str(prepared))
    print(
        f'preparing folder:{display_path(path)} (once: {len(files)} images, {len(class_names)} classes, '
        f'{channels} channel(s)) in {display_path(data_dir)}',
        file=sys.stderr,
        flush=True,
    )
    if layout == 'splits':
        reader = tfds.ImageFolder(str(root), shape=(None, None, channels))
        splits = {s: reader.as_dataset(split=s, shuffle_files=False) for s in found}
    else:
        from PIL import Image

        mode = 'L' if channels == 1 else 'RGB'

        def examples(items):
            for file, class_name in items:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert(mode), np.uint8).reshape(image.height, image.width, channels)
                yield str(file.relative_to(root)), {'image': pixels, 'label': class_name, 'image/filename': str(file)}

        splits = {s: examples(items) for s, items in split_by_fractions(found[''], fractions, seed).items() if items}
    from jaxdl.data import quiet_tfds

    with quiet_tfds():
        builder = adhoc_builder.store_as_tfds_dataset(
            name=name,
            config=version_key,
            version='1.0.0',
            features=features,
            split_datasets=splits,
            data_dir=data_dir,
            description=f'Images of {root} ({layout}).',
        )
    return tfds.builder_from_directory(builder.data_dir)

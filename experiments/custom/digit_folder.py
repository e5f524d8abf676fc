"""Your own image folder through `jaxdl train`: class subfolders, PNG and JPEG of any size, grey and colour.

    python experiments/custom/export_digit_folder.py runs/digit_folder    # or point dataset.name at your folder
    jaxdl train experiments/custom/digit_folder.py

`folder:PATH` (relative to the current directory) is checked whole, then prepared once into the TFDS data dir;
without train/validation/test subfolders it is split per class by `dataset.split_fractions` (seeded). Images of
varying size are resized to `dataset.image_size`; with any colour image in the folder, every image has three
channels.
"""
from jaxdl.config import default_config


def get_config(path: str = 'runs/digit_folder'):
    config = default_config()
    config.dataset.name = f'folder:{path}'
    config.dataset.image_size = 16
    config.dataset.split_fractions = (0.7, 0.1, 0.2)
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.model.name = 'cnn'
    config.model.options.features = (32, 64)
    config.model.options.dense = 128
    config.optimizer.name = 'adam'
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 64
    config.train.duration = '20 epochs'
    config.train.early_stopping.patience = 6
    return config

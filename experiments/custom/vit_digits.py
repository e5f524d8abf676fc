"""Your own model through `jaxdl train`: the TinyViT of tiny_vit.py (beside this file) on the offline `digits`.

    jaxdl train experiments/custom/vit_digits.py
    jaxdl evaluate runs/vit_digits        # from any directory: the run records where tiny_vit.py lives

`model.name` is an import path 'module:Attr'; the directory of this file is importable while the run loads its
config, so tiny_vit.py needs no installing. `model.options` are TinyViT's own fields: a wrong one is an error
naming it and listing the valid ones.
"""
from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.name = 'digits'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.model.name = 'tiny_vit:TinyViT'
    config.model.options.patch = 2       # 8x8 digits -> 16 tokens of 2x2 pixels
    config.model.options.width = 64
    config.model.options.depth = 4
    config.model.options.heads = 4
    config.model.options.pool = 'cls'
    config.transfer.reinitialize = ('head',)  # this model's classifier is its `head` layer
    config.optimizer.name = 'adamw'
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 0.05
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '2 epochs'
    config.optimizer.clip_global_norm = 1.0
    config.dataset.augment.crop_padding = 1
    config.train.batch_size = 64
    config.train.duration = '40 epochs'
    config.train.early_stopping.patience = 10
    return config

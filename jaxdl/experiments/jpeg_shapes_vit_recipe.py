"""A modern image recipe (DeiT / timm style) in one file: a ViT on the streamed `jpeg_shapes`, at 32x32.

    jaxdl train jpeg_shapes_vit_recipe

Every piece of the recipe is a config key: AdamW with warmup and cosine decay, label smoothing, the random-resized
crop and flip, RandAugment (2 ops at magnitude 9), Mixup and CutMix (timm's 0.8 and 1.0, switched half and half),
stochastic depth, layer-wise learning-rate decay, an EMA of the weights evaluated beside them, and bf16 compute.
Its ablation (README, "Recipe pieces") removes each in turn:

    jaxdl sweep jpeg_shapes_vit_recipe --seeds 3 --workdir runs/recipe_ablation \
        --ablate optimizer.ema_decay=0 --ablate dataset.augment.mixup_alpha=0,dataset.augment.cutmix_alpha=0 \
        --ablate dataset.augment.randaugment_layers=0 --ablate model.options.drop_path=0 \
        --ablate optimizer.layer_decay=0 --ablate task.options.label_smoothing=0

It is small enough for two CPU cores (about two minutes a run); at this size and length some pieces do not pay
off, which the ablation reports as it finds it.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.name = 'jpeg_shapes'
    config.dataset.image_size = 32
    config.dataset.mean = (0.5, 0.5, 0.5)
    config.dataset.std = (0.25, 0.25, 0.25)
    config.dataset.augment.random_resized_crop = True
    config.dataset.augment.crop_scale = (0.35, 1.0)  # the shape must stay in view more often than in ImageNet
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.randaugment_layers = 2
    config.dataset.augment.randaugment_magnitude = 9
    config.dataset.augment.mixup_alpha = 0.8
    config.dataset.augment.cutmix_alpha = 1.0
    config.dataset.center_crop = 0.875
    config.task.options.label_smoothing = 0.1
    config.model.name = 'vit'
    config.model.options.patch = 8  # 16 tokens: a few minutes a run on two CPU cores
    config.model.options.width = 64
    config.model.options.depth = 4
    config.model.options.heads = 4
    config.model.options.mlp = 128
    config.model.options.pool = 'gap'
    config.model.options.drop_path = 0.1
    config.model.dtype = 'bfloat16'
    config.optimizer.name = 'adamw'
    config.optimizer.learning_rate = 0.002
    config.optimizer.weight_decay = 0.05
    config.optimizer.clip_global_norm = 1.0
    config.optimizer.layer_decay = 0.75
    config.optimizer.ema_decay = 0.998
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 128
    config.train.duration = '20 epochs'
    config.train.validate_every = '5 epochs'
    return config

"""Every piece of the recipe on at once, small: a ViT on digits with an EMA of its weights, Mixup and CutMix,
RandAugment, stochastic depth, layer-wise learning-rate decay and label smoothing (test_recipe_resume.py kills and
resumes it). float32 and SGD: the moved-device resume compares to float tolerance, which bf16's rounding and Adam's
normalisation of near-zero gradients would swamp."""
from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.randaugment_layers = 2
    config.dataset.augment.mixup_alpha = 0.8
    config.dataset.augment.cutmix_alpha = 1.0
    config.task.options.label_smoothing = 0.1
    config.model.name = 'vit'
    config.model.options.patch = 2
    config.model.options.width = 16
    config.model.options.depth = 2
    config.model.options.heads = 2
    config.model.options.mlp = 32
    config.model.options.pool = 'gap'
    config.model.options.drop_path = 0.2
    config.optimizer.name = 'sgd'
    config.optimizer.learning_rate = 0.05
    config.optimizer.layer_decay = 0.75
    config.optimizer.ema_decay = 0.9
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '5 steps'
    config.train.batch_size = 32
    config.train.eval_batch_size = 128
    config.train.duration = '25 steps'
    config.train.validate_every = '10 steps'
    config.train.checkpoint_every = '5 steps'
    config.train.log_every = '5 steps'
    config.train.select = 'best_ema'
    return config

"""A ResNet-10 (BatchNorm, 'small' stem for 8x8 inputs) on `digits`, with random-translation augmentation."""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.name = 'digits'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.dataset.augment.crop_padding = 1
    config.model.name = 'resnet'
    config.model.options.depth = 10
    config.model.options.width = 16
    config.model.options.stem = 'small'
    config.optimizer.name = 'sgd'
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 64
    config.train.duration = '30 epochs'
    return config

"""Image regression: predict the angle (degrees) each `rotated_digits` image was turned by.

    jaxdl train rotation_regression
    jaxdl predict runs/rotation_regression some_digit.png      # prints the angle

The angles are uniform in [-45, 45], so the targets are normalised by mean 0 and std 26 (90 / sqrt(12)) for
the loss; rmse, mae and within_threshold (share within 10 degrees) are reported in degrees.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.seed = 0
    config.task.name = 'regression'
    config.task.options.targets = ('angle',)
    config.task.options.mean = (0.0,)
    config.task.options.std = (26.0,)
    config.task.options.loss = 'mse'
    config.task.options.threshold = 10.0
    config.dataset.name = 'rotated_digits'
    config.dataset.mean = (0.1,)
    config.dataset.std = (0.25,)
    config.model.name = 'cnn'
    config.model.options.features = (16, 32)
    config.model.options.dense = 64
    config.optimizer.name = 'adam'
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 128
    config.train.duration = '4 epochs'
    config.train.validate_every = '1 epoch'
    config.train.early_stopping.patience = 3
    return config

"""Default experiment: the small CNN on the offline `digits` dataset (8x8 handwritten digits).

    jaxdl train digits_cnn                    # SGD with momentum
    jaxdl train digits_cnn:adam               # or :rmsprop, :sgd
    jaxdl train digits_cnn --config.optimizer.name=adam   # same, by the field itself

The optimizer is chosen by the field `optimizer.name`; `learning_rate=None` takes each optimizer's usual
default (jaxdl.optim.DEFAULT_LEARNING_RATES), so switching the name alone gives a sensible run.
"""

from jaxdl.config import default_config


def get_config(optimizer: str = 'sgd'):
    config = default_config()
    config.seed = 0
    config.dataset.name = 'digits'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.model.name = 'cnn'
    config.model.options.features = (32, 64)
    config.model.options.dense = 128
    config.optimizer.name = optimizer
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 64
    config.train.duration = '30 epochs'
    config.train.validate_every = '1 epoch'
    config.train.select = 'best'
    config.train.early_stopping.patience = 10
    return config

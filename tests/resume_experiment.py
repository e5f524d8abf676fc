"""A small run whose validation loss improves, then worsens: the resume tests kill it around its best checkpoint.

100 training digits (10 a class), so Adam overfits within a few dozen steps; dropout and translation make the
data order and the step's randomness matter, so a resume that replays either differently shows in the numbers."""
from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.dataset.train_examples_per_class = 10
    config.dataset.augment.crop_padding = 1
    config.model.options.features = (8, 16)
    config.model.options.dense = 32
    config.model.options.dropout = 0.3
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.01
    config.train.batch_size = 20
    config.train.eval_batch_size = 128
    config.train.duration = '80 steps'
    config.train.validate_every = '5 steps'
    config.train.checkpoint_every = '4 steps'
    config.train.log_every = '3 steps'
    config.train.early_stopping.patience = 2
    config.train.early_stopping.min_delta = 0.02
    return config

"""The small, fast digits config the tests train (through the CLI, and in-process via the `make_config` fixture)."""
from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.model.options.features = (8, 16)
    config.model.options.dense = 32
    config.optimizer.learning_rate = 0.05
    config.train.batch_size = 64
    config.train.eval_batch_size = 128
    config.train.duration = '2 epochs'
    config.train.log_every = '5 steps'
    return config

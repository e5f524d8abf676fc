"""Multi-label classification: which of circle, square and triangle each `shapes_present` scene holds.

    jaxdl train shapes_multilabel
    jaxdl predict runs/shapes_multilabel scene.png       # each class's probability; those present from 0.5

The small CNN with one sigmoid per class (binary cross-entropy), Adam on a cosine schedule, flips. Reported: mAP
(the mean of each class's average precision), F1 at 0.5 (micro and per class) and the exact-match share.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.seed = 0
    config.task.name = 'multilabel'
    config.dataset.name = 'shapes_present'
    config.dataset.label = 'labels'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.25,)
    config.dataset.augment.flip_left_right = True
    config.model.name = 'cnn'
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.003
    config.optimizer.schedule.name = 'cosine'
    config.train.batch_size = 64
    config.train.eval_batch_size = 250
    config.train.duration = '10 epochs'
    config.train.validate_every = '1 epoch'
    config.train.log_every = '20 steps'
    return config

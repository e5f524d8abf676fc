"""A classification backbone transferred to a regression task: classify the digit in `rotated_digits`, then
fine-tune that backbone to predict the rotation angle from 10 training images per digit.

    jaxdl train transfer_rotation:pretrain --workdir runs/rotated_digit_classifier
    jaxdl train transfer_rotation:finetune --workdir runs/rotation_from_classifier

The fine-tuning run also trains the same budget from scratch (WORKDIR/from_scratch); summary.json compares them.
"""

from jaxdl.config import default_config

PRETRAINED = 'runs/rotated_digit_classifier'


def get_config(stage: str = 'finetune'):
    config = default_config()
    config.seed = 0
    config.dataset.name = 'rotated_digits'
    config.dataset.mean = (0.1,)
    config.dataset.std = (0.25,)
    config.model.options.features = (16, 32)
    config.model.options.dense = 64
    config.optimizer.name = 'adam'
    config.optimizer.schedule.name = 'cosine'
    config.train.batch_size = 100
    if stage == 'pretrain':  # which digit is it (the angle is not used)
        config.task.name = 'classification'
        config.train.duration = '2 epochs'
    elif stage == 'finetune':  # the angle, from 100 training images
        config.task.name = 'regression'
        config.task.options.targets = ('angle',)
        config.task.options.std = (26.0,)
        config.dataset.train_examples_per_class = 10
        config.transfer.init_from = PRETRAINED
        config.transfer.reinitialize = ('head',)
        config.transfer.compare_with_scratch = True
        config.optimizer.groups = (('backbone', 0.1),)
        config.train.duration = '60 epochs'  # 60 steps of 100 images
        config.train.validate_every = '5 epochs'
    else:
        raise ValueError(f'stage {stage!r}: use transfer_rotation.py:pretrain or transfer_rotation.py:finetune')
    return config

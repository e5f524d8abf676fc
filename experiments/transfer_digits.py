"""Transfer learning: pretrain on digits 0-4, fine-tune on digits 5-9 from 10 training images per class.

    jaxdl train experiments/transfer_digits.py:pretrain --workdir runs/digits_0_to_4
    jaxdl train experiments/transfer_digits.py:finetune --workdir runs/digits_5_to_9

The fine-tuning run loads the pretrained convolutions (transfer.init_from), gives the new task a fresh head and
dense layer, and trains the convolutions at a tenth of the learning rate. It then trains the same budget from scratch into
runs/digits_5_to_9/from_scratch and reports both test accuracies side by side in summary.json (`comparison`).
"""
from jaxdl.config import default_config

PRETRAINED = 'runs/digits_0_to_4'


def _base():
    config = default_config()
    config.seed = 0
    config.dataset.name = 'digits'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.model.name = 'cnn'
    config.model.options.features = (32, 64)
    config.model.options.dense = 128
    config.optimizer.name = 'sgd'
    config.optimizer.learning_rate = 0.05
    config.optimizer.schedule.name = 'cosine'
    config.train.validate_every = '1 epoch'
    config.train.log_every = '5 steps'
    return config


def get_config(stage: str = 'finetune'):
    config = _base()
    if stage == 'pretrain':  # every training image of digits 0-4
        config.dataset.classes = (0, 1, 2, 3, 4)
        config.optimizer.schedule.warmup = '1 epoch'
        config.train.batch_size = 64
        config.train.duration = '15 epochs'
        config.train.early_stopping.patience = 5
    elif stage == 'finetune':  # digits 5-9 (relabelled 0-4), 10 training images of each
        config.dataset.classes = (5, 6, 7, 8, 9)
        config.dataset.train_examples_per_class = 10
        config.transfer.init_from = PRETRAINED
        # The convolutions transfer; the backbone's last dense layer is re-initialised with the head: trained on
        # five classes it collapses onto them (a linear probe of its features scores below one of random
        # features on digits 5-9), while the convolutions' stroke detectors carry over best.
        config.transfer.reinitialize = ('head', 'backbone/Dense_0')
        config.transfer.compare_with_scratch = True
        config.optimizer.groups = (('backbone/Conv_.*', 0.1),)  # pretrained convolutions move ten times slower
        config.train.batch_size = 25
        config.train.duration = '20 epochs'  # 40 steps: the short budget both runs get
    else:
        raise ValueError(f"stage {stage!r}: use transfer_digits.py:pretrain or transfer_digits.py:finetune")
    return config

"""Transfer learning that beats scratch: a U-Net encoder pretrained to segment the `shapes` scenes (circles,
squares, triangles) classifies five shapes it never saw (`novel_shapes`: star, cross, ring, pentagon, hexagon) from
10 training images of each.

    jaxdl train transfer_shapes:pretrain --workdir runs/shapes_encoder
    jaxdl train transfer_shapes:finetune --workdir runs/novel_shapes_finetuned

The fine-tuning run loads the encoder (transfer.init_from), reads every encoder level through a fresh pooled
dense head (average and maximum per level) and trains the encoder at a tenth of the head's learning rate; it then
trains the same budget from scratch into WORKDIR/from_scratch and reports both in summary.json (`comparison`).
`:probe` is the linear probe (the encoder and its BatchNorm statistics frozen), `:scratch` the baseline alone.

The data-efficiency curve (1, 5, 10, 50 images per class, three seeds each) and the backbone multiplier's effect:

    for variant in finetune probe scratch; do
      jaxdl sweep transfer_shapes:$variant --seeds 3 --workdir runs/transfer_shapes/$variant \\
        --parallel 2 --grid dataset.train_examples_per_class=5,10,50 --grid transfer.compare_with_scratch=False
      jaxdl sweep transfer_shapes:$variant --seeds 3 --workdir runs/transfer_shapes/$variant \\
        --parallel 2 --grid dataset.train_examples_per_class=1 --grid train.batch_size=5 \\
        --grid transfer.compare_with_scratch=False     # 5 images in all: a batch of 5
    done
    jaxdl sweep transfer_shapes:finetune --seeds 3 --workdir runs/transfer_shapes/multiplier \\
        --parallel 2 --grid dataset.train_examples_per_class=10 --grid transfer.compare_with_scratch=False \\
        --grid "optimizer.groups=(('backbone',0.0),),(('backbone',1.0),)"
    jaxdl compare runs/transfer_shapes --against dataset.train_examples_per_class --ignore train.batch_size \\
        --metrics test.accuracy --figure docs/figures/transfer_shapes.png \\
        --label 'runs/transfer_shapes/finetune=fine-tuned (backbone x0.1)' \\
        --label 'runs/transfer_shapes/probe=linear probe' --label 'runs/transfer_shapes/scratch=scratch' \\
        --label 'runs/transfer_shapes/multiplier=fine-tuned, another backbone multiplier'
    jaxdl compare runs/transfer_shapes --ignore train.batch_size --json > docs/figures/transfer_shapes.json
"""

from pathlib import Path

from jaxdl.config import default_config, load_config_file

PRETRAINED = 'runs/shapes_encoder'
FEATURES = (16, 32, 64, 128)
BACKBONE_MULTIPLIER = 0.1


def _pretrain():
    """jaxdl/experiments/shapes_segmentation.py (the same U-Net widths, FEATURES), for 3 epochs instead of 8."""
    config = load_config_file(str(Path(__file__).with_name('shapes_segmentation.py')))
    config.model.options.features = FEATURES
    config.train.duration = '3 epochs'
    return config


def _classify(examples_per_class: int = 10):
    """`novel_shapes` from a few images per class: 300 Adam steps, the same budget for every variant."""
    config = default_config()
    config.seed = 0
    config.dataset.name = 'novel_shapes'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.25,)
    config.dataset.train_examples_per_class = examples_per_class
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.crop_padding = 4
    config.model.name = 'unet'
    config.model.options.features = FEATURES
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.003
    config.optimizer.schedule.name = 'cosine'
    config.train.batch_size = 25
    config.train.eval_batch_size = 250
    config.train.duration = '300 steps'
    config.train.validate_every = '50 steps'
    config.train.checkpoint_every = '50 steps'
    config.train.log_every = '25 steps'
    return config


def get_config(stage: str = 'finetune'):
    if stage == 'pretrain':
        return _pretrain()
    if stage not in ('finetune', 'probe', 'scratch'):
        raise ValueError(f'stage {stage!r}: use transfer_shapes.py:pretrain, :finetune, :probe or :scratch')
    config = _classify()
    if stage == 'scratch':
        return config
    config.transfer.init_from = PRETRAINED
    config.transfer.reinitialize = ('head',)  # the decoder and pixel classifier stay behind
    if stage == 'finetune':
        config.optimizer.groups = (('backbone', BACKBONE_MULTIPLIER),)
        config.transfer.compare_with_scratch = True
    else:  # a linear probe: only the head learns, on the encoder's fixed features
        config.optimizer.groups = (('backbone', 0.0),)
        config.model.freeze_batch_norm = True
    return config

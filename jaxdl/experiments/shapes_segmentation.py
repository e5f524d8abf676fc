"""Semantic segmentation: the class of every pixel of the `shapes` scenes (background, circle, square, triangle).

    jaxdl train shapes_segmentation
    jaxdl predict runs/shapes_segmentation scene.png       # writes scene.segmentation.png, the mask overlaid

A small U-Net (encoder widths 16-32-64-128, BatchNorm) trained with Adam on a cosine schedule; flips and crops
move the masks with the images. Reported: mean IoU over the four classes, pixel accuracy, IoU per class.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.seed = 0
    config.task.name = 'segmentation'
    config.dataset.name = 'shapes'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.25,)
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.crop_area = 0.7
    config.model.name = 'unet'
    config.model.options.features = (16, 32, 64, 128)
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.003
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 32
    config.train.eval_batch_size = 100
    config.train.duration = '8 epochs'
    config.train.validate_every = '1 epoch'
    config.train.log_every = '20 steps'
    return config

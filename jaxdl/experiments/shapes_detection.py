"""Object detection: a box and a class for every circle, square and triangle of the `shapes` scenes.

    jaxdl train shapes_detection
    jaxdl predict runs/shapes_detection scene.png          # writes scene.detections.png, boxes with labels

CenterNet on a small U-Net: a heatmap of object centres per class and box sizes at 1/4 of the image resolution
(16x16 cells for 64x64 scenes), decoded to the 100 best peaks per image inside jit. Flips and crops move the
boxes with the images. Reported: COCO mAP@[.5:.95], mAP@.5 and mAP@.75 by pycocotools, and AP per class.
"""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.seed = 0
    config.task.name = 'detection'
    config.task.options.max_objects = 8
    config.task.options.output_stride = 4
    config.dataset.name = 'shapes'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.25,)
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.crop_area = 0.7
    config.model.name = 'unet'
    config.model.options.features = (16, 32, 64, 128)
    config.model.options.head_width = 64
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.003
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 32
    config.train.eval_batch_size = 100
    config.train.duration = '15 epochs'
    config.train.validate_every = '1 epoch'
    config.train.log_every = '20 steps'
    return config

"""ImageNet-style training, streamed: a ResNet-10 on `jpeg_shapes` (JPEG files of 128-224 px in ArrayRecord) with
the random-resized crop and flip in training and the 0.875 centre crop in evaluation, at 96x96.

The random-resized crop decodes only its window of each JPEG, which only the streaming path does, so
`dataset.source='auto'` streams here; each process reads only its own examples, and nothing is cached."""

from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.name = 'jpeg_shapes'
    config.dataset.image_size = 96
    config.dataset.mean = (0.5, 0.5, 0.5)
    config.dataset.std = (0.25, 0.25, 0.25)
    config.dataset.augment.random_resized_crop = True
    config.dataset.augment.crop_scale = (0.35, 1.0)  # the object must stay in view more often than in ImageNet
    config.dataset.augment.flip_left_right = True
    config.dataset.center_crop = 0.875
    config.model.name = 'resnet'
    config.model.options.depth = 10
    config.model.options.width = 16
    config.optimizer.name = 'sgd'
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule.name = 'cosine'
    config.optimizer.schedule.warmup = '1 epoch'
    config.train.batch_size = 64
    config.train.duration = '12 epochs'
    return config

"""Fine-tuning an ImageNet ResNet imported from torchvision or timm on `novel_shapes`, 10 images per class.

    python -c "import torchvision, safetensors.torch as st; st.save_file(torchvision.models.resnet18(
        weights='IMAGENET1K_V1').state_dict(), 'weights/resnet18.safetensors')"     # where the network allows
    jaxdl train finetune_imported_resnet --workdir runs/resnet18_novel_shapes
    jaxdl train finetune_imported_resnet --config.transfer.init_from=PATH.pth   # any other file

`transfer.init_from` names the weights file (`.safetensors`, or a state dict saved as `.pth`); jaxdl.weights maps
a torchvision or timm ResNet's names onto jaxdl's `resnet` (`model.options.depth` must be the file's: 18, 34, 50,
...). The ImageNet classifier is replaced by a fresh 5-way head, the backbone trains at a tenth of the head's rate
with its BatchNorm statistics frozen (50 images make poor batch statistics), and images are normalised with
ImageNet's channel means and deviations, as the weights expect. The same budget is trained from scratch into
WORKDIR/from_scratch for comparison.
"""

from jaxdl.config import default_config

WEIGHTS = 'weights/resnet18.safetensors'


def get_config(depth: str = '18'):
    config = default_config()
    config.seed = 0
    config.dataset.name = 'novel_shapes'
    config.dataset.mean = (0.485, 0.456, 0.406)  # ImageNet's, which the imported weights were trained with
    config.dataset.std = (0.229, 0.224, 0.225)
    config.dataset.image_size = 128  # the ImageNet stem quarters the image before the first block
    config.dataset.train_examples_per_class = 10
    config.dataset.augment.flip_left_right = True
    config.model.name = 'resnet'
    config.model.options.depth = int(depth)
    config.model.options.stem = 'imagenet'
    config.model.freeze_batch_norm = True
    config.transfer.init_from = WEIGHTS
    config.transfer.reinitialize = ('head',)
    config.transfer.compare_with_scratch = True
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.001
    config.optimizer.groups = (('backbone', 0.1),)
    config.optimizer.schedule.name = 'cosine'
    config.train.batch_size = 25
    config.train.eval_batch_size = 100
    config.train.duration = '200 steps'
    config.train.validate_every = '50 steps'
    config.train.checkpoint_every = '50 steps'
    config.train.log_every = '25 steps'
    return config

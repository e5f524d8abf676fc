"""What a streamed experiment's training augmentation does to its first few training images, as a grid of pictures:

    python docs/figures/augmented_examples.py jaxdl/experiments/jpeg_shapes_vit_recipe.py docs/figures/augmented_examples.png

Per row one training image: first as evaluation reads it, then five draws of the training pipeline's per-example
augmentation (random-resized crop, flip, RandAugment: the stream reader itself, with the seeds (epoch, position)
of five epochs), then the Mixup and the CutMix of the first draw with the mirrored row, as the train step mixes
them (jaxdl.train.mixing). Nothing here is a copy of the pipeline: it calls the reader training uses.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from jaxdl.config import load_config_file
from jaxdl.data.pipeline import Pipeline
from jaxdl.train.mixing import Mixing, draw, mix_images

ROWS, DRAWS = 6, 5


def training_views(experiment: str) -> tuple[np.ndarray, list[str]]:
    """uint8 [ROWS, 1 + DRAWS + 2, S, S, C] and the column titles."""
    config = load_config_file(experiment)
    pipeline = Pipeline.for_config(config)
    source = pipeline.source
    if source.name != 'stream':
        raise SystemExit(f'{experiment} reads {config.dataset.name} from memory; this figure reads the stream '
                         f'reader (dataset.source=stream)')
    records = source.records(config.dataset.train_split)
    split = config.dataset.train_split
    train, evaluation = source.reader(split, train=True), source.reader(split, train=False)
    mean, std = np.array(config.dataset.mean), np.array(config.dataset.std)
    pixels = lambda image: np.clip((np.asarray(image) * std + mean) * 255, 0, 255).astype(np.uint8)
    columns = []
    for row in range(ROWS):
        record, index = tf.constant(records.read(np.array([row]))[0]), tf.constant(row, tf.int64)
        views = [evaluation(record, index, tf.constant([0, row], tf.int64))['image']]
        views += [train(record, index, tf.constant([epoch, row], tf.int64))['image'] for epoch in range(DRAWS)]
        columns.append(views)
    images = np.array([[pixels(v) for v in views] for views in columns])
    first = jnp.asarray(images[:, 1], jnp.float32)
    mixup = _mixed(first, Mixing(mixup_alpha=config.dataset.augment.mixup_alpha or 0.8), cutmix=False)
    cutmix = _mixed(first, Mixing(cutmix_alpha=config.dataset.augment.cutmix_alpha or 1.0), cutmix=True)
    images = np.concatenate([images, mixup[:, None], cutmix[:, None]], axis=1)
    titles = ['evaluation', *[f'epoch {e}' for e in range(DRAWS)], 'Mixup', 'CutMix']
    return images, titles


def _mixed(images, mixing: Mixing, cutmix: bool) -> np.ndarray:
    """The batch mixed with its mirror by a draw whose lambda lands near 0.6 (a visible mix)."""
    height, width = images.shape[1:3]
    for key in range(100):
        d = draw(jax.random.PRNGKey(key), mixing, height, width)
        if bool(d.cutmix) == cutmix and 0.5 < float(d.lam) < 0.75:
            break
    return np.asarray(mix_images(images, jnp.flip(images, 0), d)).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('experiment')
    parser.add_argument('output')
    args = parser.parse_args()
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    images, titles = training_views(args.experiment)
    rows, cols = images.shape[:2]
    figure, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows))
    for r in range(rows):
        for c in range(cols):
            axes[r, c].imshow(images[r, c].squeeze(), cmap='gray' if images.shape[-1] == 1 else None)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=8)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == '__main__':
    main()

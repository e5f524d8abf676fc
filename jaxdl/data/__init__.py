"""Data: offline TFDS builders, per-task preprocessing and the tf.data pipeline."""

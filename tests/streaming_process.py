"""One process of a multi-process streaming read (tests/test_streaming.py): joins the others through
jax.distributed, reads its rows of the first global batches with a counting reader, and prints the indices it read
and the batches' labels and a checksum of their images as JSON."""
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))  # streaming_builders


def main(coordinator: str, count: int, index: int, steps: int) -> None:
    jax.distributed.initialize(coordinator, num_processes=count, process_id=index)
    from jaxdl.config import default_config
    from jaxdl.data.pipeline import Pipeline
    config = default_config()
    config.dataset.name, config.dataset.source, config.dataset.image_size = \
        'streaming_builders:TinyJpegShapes', 'stream', 16
    config.dataset.mean, config.dataset.std = (0.5,), (0.25,)  # as tests/test_streaming.py's stream_config
    pipeline = Pipeline.for_config(config, process_index=jax.process_index(), process_count=jax.process_count())
    records = pipeline.source.records('train')
    read, seen = records.read, []
    records.read = lambda indices: (seen.extend(int(i) for i in indices), read(indices))[1]
    batches = pipeline.train_batches(seed=3, global_batch=8)
    rows = [next(batches) for _ in range(steps)]
    print(json.dumps({'process': jax.process_index(), 'read': seen,
                      'labels': [b['label'].tolist() for b in rows],
                      'image_sums': [b['image'].sum(axis=(1, 2, 3)).round(3).tolist() for b in rows]}))


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))

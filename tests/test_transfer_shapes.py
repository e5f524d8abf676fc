"""The transfer pair of jaxdl/experiments/transfer_shapes.py: the `novel_shapes` builder, and a segmentation encoder
that classifies it through the U-Net's pooled head. A module of its own, so that pytest-xdist runs it beside
test_transfer.py's trained fixtures."""
import pytest
import json
from collections import Counter

import numpy as np

from jaxdl.config import apply_updates, default_config
from jaxdl.data.pipeline import Pipeline


def test_novel_shapes_are_balanced_seeded_and_five_distinct_outlines(data_dir):
    from jaxdl.data.builders import novel_shapes
    first = novel_shapes.draw_image(np.random.default_rng([1, 2]), 3)
    again = novel_shapes.draw_image(np.random.default_rng([1, 2]), 3)
    assert np.array_equal(first['image'], again['image']) and first['image'].shape == (64, 64, 3)
    masks = [novel_shapes.object_mask(label, 20, 0.3, (32, 32)) for label in range(5)]
    for a in range(5):  # drawn at the same size and place, no two outlines cover the same pixels
        for b in range(a + 1, 5):
            assert (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum() < 0.9, (a, b)
    pipeline = Pipeline.for_config(apply_updates(default_config(), {'dataset.name': 'novel_shapes'}))
    assert pipeline.spec.class_names == novel_shapes.CLASS_NAMES
    sizes = {s: pipeline.size(s) for s in ('train', 'validation', 'test')}
    assert sizes == novel_shapes.SPLIT_SIZES
    labels = np.concatenate([b['label'][b['valid']] for b in pipeline.eval_batches('test', 250)])
    assert Counter(labels.tolist()) == {c: 100 for c in range(5)}


@pytest.mark.slow
def test_a_segmentation_encoder_classifies_novel_shapes_through_its_pooled_head(data_dir, tmp_path):
    """The transfer_shapes pair through the CLI, a few steps each: every encoder array loads, the decoder stays
    behind, the new pooled head starts fresh. Run at XLA's default optimisation level: at the suite's level 0,
    XLA:CPU (jaxlib 0.10.2) computes NaN gradients for this model's backbone, and the default is what users run
    (benchmarks/README.md)."""
    from conftest import ROOT, jaxdl
    experiment = ROOT / 'jaxdl' / 'experiments' / 'transfer_shapes.py'
    quick = ['--config.train.duration=3 steps', '--config.train.validate_every=3 steps', '--no-progress',
             '--config.train.checkpoint_every=3 steps', '--config.model.options.features=(8,16)']
    default_xla = {'XLA_FLAGS': ''}
    result = jaxdl('train', f'{experiment}:pretrain', '--workdir', tmp_path / 'encoder', *quick, env=default_xla)
    assert result.returncode == 0, result.stderr[-2000:]
    result = jaxdl('train', f'{experiment}:finetune', '--workdir', tmp_path / 'finetuned', *quick, env=default_xla,
                   timeout=600, *[f'--config.transfer.init_from={tmp_path / "encoder"}',
                                  '--config.transfer.compare_with_scratch=False'])
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / 'finetuned' / 'environment.json').read_text())['transfer']
    assert record['reinitialized'] == ['params/head/Dense_0/bias', 'params/head/Dense_0/kernel']
    assert record['loaded'] == 20  # 2 levels x 2 convolutions x (kernel + BatchNorm scale, bias, mean, var)
    assert any('UNetDecoder_0' in p for p in record['unused_in_source'])
    summary = json.loads((tmp_path / 'finetuned' / 'summary.json').read_text())
    assert summary['test']['count'] == 500 and 0.0 <= summary['test']['accuracy'] <= 1.0

"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (set before jax is imported).

Trains the same global batches with the jit, pmap and sharded runners, and with the pure step under jax.shard_map
(check_vma on and off), and prints, as JSON, the largest
deviation of each from single-device training, and what each counts when evaluating a padded split.
"""
import json
import sys
from functools import partial

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxdl
from jaxdl.config import Plan, apply_updates, default_config
from jaxdl.data.pipeline import Pipeline
from jaxdl.evaluation import evaluate
from jaxdl.models import build_model
from jaxdl.optim import build_optimizer
from jaxdl.tasks import build_task
from jaxdl.train.step import make_runner


SMALL_MODELS = {'cnn': {'features': (8, 16), 'dense': 32}, 'resnet': {'depth': 10, 'width': 8, 'stem': 'small'}}


def main(model_name: str) -> dict:
    config = apply_updates(default_config(), {
        'model.name': model_name, 'model.options': SMALL_MODELS[model_name],
        'dataset.mean': (0.5,), 'dataset.std': (0.5,), 'optimizer.name': 'sgd', 'optimizer.learning_rate': 0.1})
    pipeline = Pipeline.for_config(config)
    stream = pipeline.train_batches(seed=0, global_batch=64)
    batches = [next(stream) for _ in range(5)]
    task = build_task(config.task, 10)
    model = build_model(config.model, 10)
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 19))
    out = {'devices': jax.device_count()}
    params = {}
    for kind in ('jit', 'pmap', 'sharded'):
        runner = make_runner(kind, task)
        state = runner.place_state(jaxdl.create_train_state(model, tx, seed=0, image_shape=(8, 8, 1)))
        for batch in batches:
            state, _ = runner.train(state, batch)
        host = jax.device_get(runner.host_state(state))
        params[kind] = host
        # 359 test examples: batch 56 = 7 per device; no batch size x device count divides 359.
        metrics = evaluate(runner, state, pipeline.eval_batches('test', 56), task)
        out[f'{kind}_eval_count'] = metrics['count']
        out[f'{kind}_eval_loss'] = metrics['loss']
        out[f'{kind}_num_devices'] = runner.num_devices
    # The pure step under jax.shard_map directly, with JAX's default check_vma=True (replicated parameters are
    # invariant there, and their gradients arrive summed) and with it off: the step must sum gradients once.
    mesh = jax.make_mesh((jax.device_count(),), ('data',))
    replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    for check_vma in (True, False):
        step = jax.jit(jax.shard_map(partial(jaxdl.train_step, task=task, axis_name='data'), mesh=mesh,
                                     in_specs=(P(), P('data')), out_specs=(P(), P()), check_vma=check_vma))
        state = jax.device_put(jaxdl.create_train_state(model, tx, seed=0, image_shape=(8, 8, 1)), replicated)
        for batch in batches:
            state, _ = step(state, jax.device_put(batch, rows))
        params[f'shard_map_vma_{str(check_vma).lower()}'] = jax.device_get(state)
    # The float noise of the computation itself: single-device training of the same mathematics in another
    # reduction order, the batches' rows reversed, or with the other CPU convolution kernels.
    for kind, reorder, kernels in (('reordered', lambda x: x[::-1], 'eigen'), ('other_kernels', None, 'ynnpack')):
        runner = make_runner('jit', task, kernels)
        state = runner.place_state(jaxdl.create_train_state(model, tx, seed=0, image_shape=(8, 8, 1)))
        for batch in batches:
            state, _ = runner.train(state, jax.tree.map(reorder, batch) if reorder else batch)
        params[kind] = jax.device_get(state)
    for kind in ('pmap', 'sharded', 'shard_map_vma_true', 'shard_map_vma_false', 'reordered', 'other_kernels'):
        for part in ('params', 'model_state'):
            reference = jax.tree.leaves(getattr(params['jit'], part))
            scale = max((float(np.max(np.abs(b))) for b in reference), default=1.0)
            pairs = list(zip(jax.tree.leaves(getattr(params[kind], part)), reference))
            # rtol 1e-5 element-wise with an absolute floor of 1e-5 of the model's largest value: BatchNorm biases
            # in front of another normalisation have a true gradient of ~0 and hold only cancellation noise.
            out[f'{kind}_{part}_allclose'] = all(np.allclose(a, b, rtol=1e-5, atol=1e-5 * scale) for a, b in pairs)
            out[f'{kind}_{part}_deviation'] = max((float(np.max(np.abs(a - b))) / scale for a, b in pairs), default=0.0)
        out[f'{kind}_steps'] = int(params[kind].step)
    out['params_moved'] = not np.allclose(jax.tree.leaves(params['jit'].params)[0],
                                          jax.tree.leaves(jaxdl.create_train_state(model, tx, seed=0,
                                                                                   image_shape=(8, 8, 1)).params)[0])
    return out


def dense() -> dict:
    """Detection's evaluation gathers per-example predictions (boxes for COCO mAP) from every device: each runner
    must hand back the same rows, in the same order, padding rows included and marked, whatever the device count.
    The task here returns the gathered rows themselves instead of computing mAP from them. Segmentation's
    metrics come from a confusion matrix summed across devices."""
    import dataclasses
    from jaxdl.tasks.detection import Detection

    @dataclasses.dataclass(frozen=True)
    class ShowGathered(Detection):
        def summarize(self, sums, predictions=None):
            return {**super().summarize(sums), 'rows': {k: np.asarray(v).tolist() for k, v in predictions.items()}}

    config = apply_updates(default_config(), {
        'task.name': 'detection', 'task.options.max_objects': 8, 'task.options.max_detections': 5,
        'dataset.name': 'shapes', 'dataset.mean': (0.5,), 'dataset.std': (0.25,), 'model.name': 'unet',
        'model.options.features': (8, 16, 16), 'model.options.head_width': 8})
    pipeline = Pipeline.for_config(config)
    task = ShowGathered(num_classes=3, max_detections=5)
    model = build_model(config.model, 3, task.head_options)
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 10))
    state = jaxdl.create_train_state(model, tx, seed=0, image_shape=(64, 64, 3))
    out = {'devices': jax.device_count()}
    for kind in ('jit', 'pmap', 'sharded'):
        runner = make_runner(kind, task)
        # 20 examples in batches of 8: the last batch has 4 padding rows.
        out[kind] = evaluate(runner, runner.place_state(state), pipeline.eval_batches('validation[:20]', 8), task)
    # Segmentation's confusion matrix is a metric sum like any other: summed over the devices, then the batches.
    config = apply_updates(config, {'task.name': 'segmentation', 'task.options': {}})
    pipeline = Pipeline.for_config(config)
    task = build_task(config.task, 4)
    model = build_model(config.model, 4, task.head_options)
    state = jaxdl.create_train_state(model, tx, seed=0, image_shape=(64, 64, 3))
    for kind in ('jit', 'pmap', 'sharded'):
        runner = make_runner(kind, task)
        out[f'segmentation_{kind}'] = evaluate(runner, runner.place_state(state),
                                               pipeline.eval_batches('validation[:20]', 8), task)
    return out


if __name__ == '__main__':
    print('RESULT ' + json.dumps(dense() if sys.argv[1] == 'dense' else main(sys.argv[1])))

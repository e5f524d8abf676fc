"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (set before jax is imported).

Trains the same global batches with the jit, pmap and sharded runners, and with the pure step under jax.shard_map
(check_vma on and off), and prints, as JSON, the largest
deviation of each from single-device training, and what each counts when evaluating a padded split.
"""
import copy
import json
import sys
from functools import partial

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxdl
from jaxdl.config import Plan, apply_updates, default_config
from jaxdl.data.pipeline import Pipeline
from jaxdl.train.evaluation import evaluate
from jaxdl.models import build_model
from jaxdl.optim import build_optimizer
from jaxdl.tasks import build_task
from jaxdl.train.runners import make_runner


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
    # reduction order, the batches' rows reversed, or with the other CPU convolution kernels. The BatchNorm-free
    # CNN is held to a fixed tolerance instead (its noise measured 0), so only the ResNet pays for these runs.
    noise_runs = (('reordered', lambda x: x[::-1], 'eigen'), ('other_kernels', None, 'ynnpack'))
    for kind, reorder, kernels in noise_runs if model_name == 'resnet' else ():
        runner = make_runner('jit', task, kernels)
        state = runner.place_state(jaxdl.create_train_state(model, tx, seed=0, image_shape=(8, 8, 1)))
        for batch in batches:
            state, _ = runner.train(state, jax.tree.map(reorder, batch) if reorder else batch)
        params[kind] = jax.device_get(state)
        out[f'{kind}_eval_loss'] = evaluate(runner, state, pipeline.eval_batches('test', 56), task)['loss']
    for kind in [k for k in ('pmap', 'sharded', 'shard_map_vma_true', 'shard_map_vma_false', 'reordered',
                             'other_kernels') if k in params]:
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


def fsdp() -> dict:
    """The state split over an fsdp mesh axis: training equals one device's, each device holds its share of every
    large leaf, no step transfers anything implicitly, a checkpoint restores into another mesh, and each bad
    mesh, rule or batch is named."""
    import tempfile
    from jaxdl.checkpoint import Checkpoints
    from jaxdl.errors import ConfigError
    from jaxdl.train.state import abstract_train_state, create_train_state
    config = apply_updates(default_config(), {
        'model.options': {'features': (8, 16), 'dense': 256}, 'dataset.mean': (0.5,), 'dataset.std': (0.5,),
        'optimizer.name': 'adam', 'optimizer.learning_rate': 0.003})
    pipeline = Pipeline.for_config(config)
    stream = pipeline.train_batches(seed=0, global_batch=64)
    batches = [next(stream) for _ in range(5)]
    evaluation = next(iter(pipeline.eval_batches('test', 64)))
    task = build_task(config.task, 10)
    model = build_model(config.model, 10)
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 19))
    abstract = abstract_train_state(model, tx, image_shape=(8, 8, 1))
    out = {'devices': jax.device_count()}

    def train(runner):
        state = runner.place_state(create_train_state(model, tx, seed=0, image_shape=(8, 8, 1),
                                                      shardings=runner.state_shardings(abstract)))
        with jax.transfer_guard('disallow'):  # any implicit host<->device transfer in a step is an error
            for batch in batches:
                state, metrics = runner.train(state, batch)
            sums, _ = runner.eval(state, evaluation)
        return state, sums

    reference, reference_sums = train(make_runner('jit', task))
    reference = jax.device_get(reference)
    device = jax.devices()[0]
    for mesh in ('fsdp=8', 'data=2,fsdp=4'):
        runner = make_runner('fsdp', task, mesh=mesh)
        state, sums = train(runner)
        host = jax.device_get(state)
        pairs = list(zip(jax.tree.leaves(host.params), jax.tree.leaves(reference.params)))
        scale = max(float(np.max(np.abs(b))) for _, b in pairs)
        total = sum(x.nbytes for x in jax.tree.leaves((state.params, state.opt_state)))
        here = sum(shard.data.nbytes for x in jax.tree.leaves((state.params, state.opt_state))
                   for shard in x.addressable_shards if shard.device == device)
        kernel = state.params['backbone']['Dense_0']['kernel']
        out[mesh] = {'allclose': all(np.allclose(a, b, rtol=1e-5, atol=1e-5 * scale) for a, b in pairs),
                     'deviation': max(float(np.max(np.abs(a - b))) / scale for a, b in pairs),
                     'device_share': here / total, 'dense_kernel_spec': list(kernel.sharding.spec),
                     'dense_kernel_shard': list(kernel.addressable_shards[0].data.shape),
                     'eval_loss': task.summarize(jax.device_get(sums))['loss'],
                     'reference_eval_loss': task.summarize(jax.device_get(reference_sums))['loss']}
    # A checkpoint written from the fsdp=8 mesh restores into one device and into another mesh.
    with tempfile.TemporaryDirectory() as directory:
        checkpoints = Checkpoints(directory)
        checkpoints.save(5, state.to_checkpoint(), {}, None)
        checkpoints.wait()
        single = jax.sharding.SingleDeviceSharding(device)
        targets = {'one_device': jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single),
                                              abstract.to_checkpoint()),
                   'data2_fsdp4': jax.tree.map(
                       lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract.to_checkpoint(),
                       make_runner('fsdp', task, mesh='data=2,fsdp=4').state_shardings(abstract).to_checkpoint())}
        for name, target in targets.items():
            tree, _ = checkpoints.restore(5, target)
            out[f'restored_{name}'] = {
                'equal': all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(jax.device_get(tree)),
                                                                   jax.tree.leaves(host.to_checkpoint()))),
                'placed_as_asked': all(a.sharding == t.sharding for a, t in zip(jax.tree.leaves(tree),
                                                                                 jax.tree.leaves(target)))}
        checkpoints.close()
    errors = {}
    for name, attempt in {
            'mesh': lambda: make_runner('fsdp', task, mesh='data=3,fsdp=2'),
            'rule_matches_nothing': lambda: make_runner('fsdp', task, sharding_rules=(('decoder/.*', 'auto'),)
                                                        ).state_shardings(abstract),
            'dimension': lambda: make_runner('fsdp', task, sharding_rules=(('head/Dense_0/kernel', ',fsdp'),)
                                             ).state_shardings(abstract),
            'batch': lambda: make_runner('fsdp', task).eval(None, {k: v[:12] for k, v in evaluation.items()})}.items():
        try:
            attempt()
            errors[name] = None
        except ConfigError as e:
            errors[name] = str(e)
    out['errors'] = errors
    return out


def fit_each_parallel_mode(workdir: str) -> dict:
    """`fit()` of tests/small_experiment.py (20 steps, through a validation and a checkpoint) with each
    multi-device runner, one after another in this process: the run directories land under `workdir`."""
    from pathlib import Path
    from jaxdl.config import load_config_file
    from jaxdl.train.loop import fit
    config = load_config_file(str(Path(__file__).parent / 'small_experiment.py'))
    for kind in ('pmap', 'sharded', 'fsdp'):
        fit(apply_updates(config, {'train.duration': '20 steps', 'train.validate_every': '10 steps',
                                   'train.parallel': kind, 'optimizer.ema_decay': 0.9,
                                   'dataset.augment.mixup_alpha': 0.8, 'dataset.augment.cutmix_alpha': 1.0}),
            Path(workdir) / kind, show_progress=False)
    return {'devices': jax.device_count()}


def fit_nnx_each_placement(workdir: str) -> dict:
    """The NNX TinyViT (experiments/custom) trained 12 steps by `fit()` under jit, pmap, sharded and fsdp,
    the run directories under `workdir`. Plain SGD: Adam's normalisation would magnify the 1e-7 reduction-order
    differences of a parallel step in the near-zero gradients of a freshly initialised ViT's biases."""
    from pathlib import Path
    from jaxdl.config import load_config_file
    from jaxdl.train.loop import fit
    custom = Path(__file__).parents[1] / 'experiments' / 'custom'
    sys.path.insert(0, str(custom))
    config = apply_updates(load_config_file(str(custom / 'vit_digits_nnx.py')), {
        'model.options.width': 16, 'model.options.depth': 1, 'model.options.heads': 2,
        'train.duration': '12 steps', 'train.validate_every': '6 steps', 'train.eval_batch_size': 128,
        'optimizer.name': 'sgd', 'optimizer.learning_rate': 0.05, 'optimizer.weight_decay': 0.0})
    for kind, placement in (('jit', {}), ('pmap', {}), ('sharded', {}), ('fsdp', {'train.fsdp_min_size': 256})):
        fit(apply_updates(copy.deepcopy(config), {'train.parallel': kind, **placement}), Path(workdir) / kind,
            show_progress=False)
    return {'devices': jax.device_count()}


if __name__ == '__main__':
    if sys.argv[1] in ('fit', 'nnx'):
        work = {'fit': fit_each_parallel_mode, 'nnx': fit_nnx_each_placement}[sys.argv[1]]
        print('RESULT ' + json.dumps(work(sys.argv[2])))
        sys.exit()
    work = {'dense': dense, 'fsdp': fsdp}.get(sys.argv[1], lambda: main(sys.argv[1]))
    print('RESULT ' + json.dumps(work()))

"""What a step costs, measured once before training: the parameters per top-level module (count, bytes, bytes
per device), the compiled train step's FLOPs (XLA's cost analysis) and memory (the compiled memory analysis),
and the device's peak rate, so the training records can give model FLOPs utilisation (MFU).

The train step is compiled ahead of time here with the run's first batch, and jax keeps that executable for
the loop's calls: measuring costs no second compilation."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxdl.parameter_paths import flat_paths

# Dense peak TFLOP/s per chip, (device_kind part, bfloat16, float32), first match wins. float32 on NVIDIA GPUs from
# Ampere on is the TF32 tensor-core rate: jax's default precision for float32 matmuls there. None: not listed.
PEAK_TFLOPS = (
    ('H200', 989.0, 494.7),
    ('H100 PCIe', 756.0, 378.0),
    ('H100', 989.0, 494.7),
    ('A100', 312.0, 156.0),
    ('L40S', 362.0, 183.0),
    ('L4', 121.0, 60.0),
    ('A10', 125.0, 62.5),
    ('V100', 125.0, 15.7),
    ('TPU v6 lite', 918.0, None),
    ('TPU v5 lite', 197.0, None),
    ('TPU v5', 459.0, None),
    ('TPU v4', 275.0, None),
    ('TPU v3', 123.0, None),
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """The table's dense peak for a device kind and compute dtype ('bfloat16' or 'float32'), else None."""
    for part, bf16, fp32 in PEAK_TFLOPS:
        if part.lower() in device_kind.lower():
            return bf16 if dtype == 'bfloat16' else fp32
    return None


@dataclasses.dataclass(frozen=True)
class ModuleRow:
    name: str  # the top-level module (or parameter) of the model
    shapes: str  # its parameters' shapes, abbreviated
    count: int
    bytes: int
    bytes_per_device: int


def parameter_table(params, device_params) -> list[ModuleRow]:
    """One row per top-level module of `params` (host or device arrays); bytes per device from where the placed
    `device_params` live (fsdp splits them; jit, sharded and pmap keep a whole copy on each device)."""
    host, placed = flat_paths(params), flat_paths(device_params)
    modules: dict[str, list] = {}
    for path, leaf in host.items():
        modules.setdefault(path.split('/')[0], []).append((path, leaf))
    rows = []
    for name, leaves in modules.items():
        shapes = ', '.join('x'.join(map(str, np.shape(leaf))) or 'scalar' for _, leaf in leaves)
        rows.append(
            ModuleRow(
                name,
                shapes if len(shapes) <= 48 else shapes[:45] + '...',
                sum(int(np.size(leaf)) for _, leaf in leaves),
                sum(int(np.size(leaf)) * np.dtype(leaf.dtype).itemsize for _, leaf in leaves),
                sum(_bytes_on_one_device(placed[path]) for path, _ in leaves),
            )
        )
    return rows


def _bytes_on_one_device(leaf) -> int:
    shards = getattr(leaf, 'addressable_shards', None)
    return shards[0].data.nbytes if shards else int(np.size(leaf)) * np.dtype(leaf.dtype).itemsize


def state_bytes_per_device(device_state) -> int:
    """The whole train state (parameters, optimizer and model state) on one device."""
    return sum(_bytes_on_one_device(leaf) for leaf in jax.tree.leaves(device_state))


def compiled_step_costs(runner, device_state, batch) -> dict | None:
    """The train step's FLOPs per device and step and its memory, compiled for `batch`; None where the runner
    gives no lowering (a user's runner without `lower_train`)."""
    if runner.lower_train is None:
        return None
    compiled = runner.lower_train(device_state, batch).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis  # (older jax: one per device)
    memory = compiled.memory_analysis()
    fields = ('argument', 'output', 'alias', 'temp', 'generated_code')
    return {
        'flops_per_device': float(analysis['flops']) if analysis and 'flops' in analysis else None,
        'memory_bytes': {f: int(getattr(memory, f'{f}_size_in_bytes')) for f in fields} if memory else None,
    }


def measure(run, device_state, batch) -> dict:
    """environment.json's `costs`: the parameter table, the state's bytes per device, the compiled step's costs
    and the peak rate MFU is taken against."""
    device = jax.devices()[0]
    peak = run.config.train.peak_tflops or peak_tflops(device.device_kind, run.config.model.dtype)
    return {
        'parameters': [dataclasses.asdict(row) for row in parameter_table(run.state.params, device_state.params)],
        'state_bytes_per_device': state_bytes_per_device(device_state),
        'train_step': compiled_step_costs(run.runner, device_state, batch),
        'device_kind': device.device_kind,
        'peak_tflops_per_device': peak,
    }


def describe(costs: dict) -> str:
    """The console's lines: the parameter table, then the step's FLOPs and memory."""
    rows = costs['parameters']
    width = max([len('parameters'), *(len(r['name']) for r in rows)])
    lines = [f'{"parameters":<{width}}  {"count":>11}  {"bytes":>9}  {"per device":>10}  shapes']
    for r in rows:
        lines.append(
            f'{r["name"]:<{width}}  {r["count"]:>11,}  {_size(r["bytes"]):>9}  '
            f'{_size(r["bytes_per_device"]):>10}  {r["shapes"]}'
        )
    total = lambda key: sum(r[key] for r in rows)
    lines.append(
        f'{"total":<{width}}  {total("count"):>11,}  {_size(total("bytes")):>9}  '
        f'{_size(total("bytes_per_device")):>10}  (train state per device: '
        f'{_size(costs["state_bytes_per_device"])})'
    )
    step = costs['train_step']
    if step:
        flops = step['flops_per_device']
        memory = step['memory_bytes'] or {}
        peak = costs['peak_tflops_per_device']
        lines.append(
            f'train step: {f"{flops / 1e9:.3g} GFLOPs" if flops else "FLOPs unknown"} per device'
            + (f', memory {", ".join(f"{k} {_size(v)}" for k, v in memory.items() if v)}' if memory else '')
            + (
                f'; peak {peak:g} TFLOP/s per device ({costs["device_kind"]})'
                if peak
                else f'; no peak rate known for {costs["device_kind"]!r} (train.peak_tflops sets one)'
            )
        )
    return '\n'.join(lines)


def _size(n: float) -> str:
    for unit in ('B', 'KB', 'MB'):
        if n < 1024:
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} GB'

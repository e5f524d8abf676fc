"""Reruns that give the same bits on a GPU: what XLA must be told before its backend starts (`train.deterministic`).

XLA:CPU computes the same numbers for the same program and thread count. XLA:GPU does not by default: scatter-adds
and some reductions accumulate with atomics in whatever order threads arrive, and autotuning times several
convolution and matmul algorithms at each compilation and may keep a different one each time.
`--xla_gpu_deterministic_ops=true` ("guarantees run-to-run determinism on GPU") makes XLA:GPU use deterministic
implementations of those ops and stops autotuning from choosing by timing (it implies
`--xla_gpu_exclude_nondeterministic_ops`, under which XLA refuses to compile `select_and_scatter`, the gradient of
flax's max_pool: the built-in models pool without it, `models/layers/pooling.py`). XLA reads XLA_FLAGS once, when
its backend starts, so `request` must run before the first JAX computation of the process: fit() calls it first.
"""

from __future__ import annotations

import os

from jaxdl.errors import ConfigError

FLAG_NAME = '--xla_gpu_deterministic_ops'
FLAG = f'{FLAG_NAME}=true'


def backend_started() -> bool:
    from jax._src import xla_bridge  # JAX has no public way to ask this

    return xla_bridge.backends_are_initialized()


def flag_value() -> bool | None:
    """What XLA_FLAGS says of the flag, as XLA reads it (a bare flag is on, the last one wins); None: nothing."""
    value = None
    for flag in os.environ.get('XLA_FLAGS', '').split():
        name, equals, text = flag.partition('=')
        if name == FLAG_NAME:
            value = not equals or text.lower() in ('true', '1')
    return value


def request(deterministic: bool) -> None:
    """Adds the flag to XLA_FLAGS while the backend has not started (a value the user set there is kept)."""
    if deterministic and not backend_started() and flag_value() is None:
        os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {FLAG}'.strip()


def record(deterministic: bool) -> dict:
    """What environment.json keeps: whether the run asked for deterministic ops and whether the backend has them.
    A GPU backend that started without them while the run asks for them is an error: the setting could not act."""
    import jax

    active = bool(flag_value())
    if deterministic and not active and jax.default_backend() == 'gpu':
        raise ConfigError(
            f"config key 'train.deterministic': the GPU backend started without {FLAG} (XLA_FLAGS="
            f'{os.environ.get("XLA_FLAGS", "")!r}), before fit() could set it, so reruns would not give '
            f"the same numbers. Start Python with XLA_FLAGS='{FLAG}', or call "
            f'jaxdl.determinism.request(True) before the first JAX computation, or set '
            f'train.deterministic=False to train without it'
        )
    return {'requested': deterministic, 'xla_gpu_deterministic_ops': active}


def rerun_reasons(recorded: dict, rerun: dict) -> list[str]:
    """Why a GPU run's numbers may differ from run to run: deterministic ops were off in either of them."""
    reasons = []
    for which, environment in (('the recorded run', recorded), ('the rerun', rerun)):
        state = environment.get('deterministic')
        if environment.get('backend') == 'gpu' and state and not state.get('xla_gpu_deterministic_ops'):
            reasons.append(
                f'{which} trained on a GPU without deterministic ops (train.deterministic=False or '
                f'{FLAG_NAME} off): its reductions and autotuned kernels vary from run to run'
            )
    return reasons

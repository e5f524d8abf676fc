"""Models: flax modules, built-in or the user's own, built from `model.name` and `model.options`.

`model.name` is a built-in (a module of this package: `cnn`, `resnet`, `unet`, each exporting `MODEL`) or an
import path `package.module:Attr` to the user's code, where `Attr` is a `flax.linen.Module` class, a function
returning one, or a `flax.nnx.Module` class. Each is constructed as

    Attr(num_outputs=..., **model.options)

plus, only where `Attr` takes them, `dtype` (from `model.dtype`), `freeze_batch_norm`, `image_shape` (the model
input's (height, width, channels): what an NNX layer's input width is read from) and the task's head options
(`head`, `output_stride`: which head a built-in backbone ends in). An NNX class also takes `rngs`, and is built
inside Flax's own bridge (`flax.nnx.bridge.ToLinen`), so its parameters and state are plain variable collections
(`params/<attribute>/...`, BatchNorm's `batch_stats`) and it trains, checkpoints, resumes, shards and transfers as a
linen module does; its `__call__(images, *, train)` is called as a linen module's. The module is applied as
`module.apply(variables, images, train=...)`, with `axis_name` (the mapped axis BatchNorm reduces its statistics
over) only where its `__call__` takes it; every non-param collection it keeps (e.g. `batch_stats`) is model state.
What it must return is the task's contract (`jaxdl.tasks.Task.check_outputs`). A user's model needs no jaxdl import.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_collections import ConfigDict

from jaxdl.errors import ConfigError
from jaxdl.registry import MODELS, frozen, keyword_parameters


def module_export(model_name: str, name: str) -> Any:
    """What the module of model `model_name` exports as `name` (a built-in's module, or the module of a user's
    model by import path), or None: the optional hooks a model brings beside itself (`TORCH_NAMES`,
    `LAYER_INDEX`)."""
    import importlib

    return getattr(importlib.import_module(MODELS.import_path(model_name).split(':')[0]), name, None)


def build_model(
    model_cfg: ConfigDict,
    num_outputs: int,
    head_options: dict | None = None,
    *,
    image_shape: tuple[int, int, int] | None = None,
) -> Any:
    """The flax Module `model_cfg` names, with `num_outputs` outputs (classes, targets, heatmap channels), for
    images of `image_shape` (passed to a model that takes it; an NNX model whose layers need their input width
    does)."""
    import flax.linen as nn
    import jax.numpy as jnp

    name = model_cfg.name
    target = MODELS.resolve(name)
    nnx_class = _is_nnx_class(target)
    if isinstance(target, type) and not nnx_class and not issubclass(target, nn.Module):
        raise ConfigError(
            f"config key 'model.name': {name!r} is the class {target.__name__}, not a "
            f'flax.linen.Module or flax.nnx.Module; name a Module class or a function that returns one'
        )
    if not callable(target):
        raise ConfigError(
            f"config key 'model.name': {name!r} is a {type(target).__name__}, not a flax.linen.Module "
            f'class or a function that returns one'
        )
    options = frozen(model_cfg.options.to_dict())
    # (NNX's metaclass hides the constructor's signature behind its own (*args, **kwargs).)
    accepted = keyword_parameters(target.__init__ if nnx_class else target)
    accepted = accepted - {'self'} if accepted is not None else None
    if nnx_class and accepted is not None:
        if 'rngs' not in accepted:
            raise ConfigError(
                f"config key 'model.name': the nnx.Module {name!r} takes no `rngs`; jaxdl builds an "
                f'NNX model as Attr(num_outputs=..., **model.options, rngs=nnx.Rngs(...))'
            )
        accepted = accepted - {'rngs'}
    extras = {
        'dtype': jnp.dtype(model_cfg.dtype),
        'freeze_batch_norm': model_cfg.freeze_batch_norm,
        **({'image_shape': tuple(image_shape)} if image_shape is not None else {}),
        **(head_options or {}),
    }
    kwargs = {'num_outputs': num_outputs, **options}
    if accepted is not None:
        if 'num_outputs' not in accepted:
            raise ConfigError(
                f"config key 'model.name': {name!r} takes no num_outputs argument; jaxdl constructs a "
                f'model as Attr(num_outputs=..., **model.options)'
            )
        unknown = sorted(set(options) - accepted)
        if unknown:
            valid = sorted(accepted - {'num_outputs', *extras})
            raise ConfigError(
                f"config key 'model.options': {', '.join(map(repr, unknown))} "
                f'{"is not an option" if len(unknown) == 1 else "are not options"} of {name!r}; its '
                f'options: {", ".join(valid) or "none"}'
            )
        kwargs.update({k: v for k, v in extras.items() if k in accepted})
        if model_cfg.freeze_batch_norm and 'freeze_batch_norm' not in accepted:
            raise ConfigError(
                f"config key 'model.freeze_batch_norm': model {name!r} takes no freeze_batch_norm "
                f'(it has no BatchNorm to freeze, or does not say so)'
            )
        if model_cfg.dtype != 'float32' and 'dtype' not in accepted:
            raise ConfigError(
                f"config key 'model.dtype': model {name!r} takes no dtype, so it computes in its own; "
                f"leave model.dtype at 'float32' or give the model a dtype field"
            )
    module = _from_nnx(name, target, kwargs) if nnx_class else _construct(name, target, kwargs)
    takes = keyword_parameters(_call_of(module))
    if takes is not None and 'train' not in takes:
        raise ConfigError(
            f"config key 'model.name': {name!r}'s __call__ takes no `train` argument; jaxdl applies a "
            f'model as module.apply(variables, images, train=...)'
        )
    return module


def _construct(name: str, target: Any, kwargs: dict) -> Any:
    """A linen Module from its class or factory."""
    import flax.linen as nn

    try:
        module = target(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key 'model.options': constructing {name!r} failed: {e}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"config key 'model.name': {name!r} returned a {type(module).__name__}, not a flax.linen.Module"
        )
    return module


def _is_nnx_class(target: Any) -> bool:
    from flax import nnx

    return isinstance(target, type) and issubclass(target, nnx.Module)


def _from_nnx(name: str, target: type, kwargs: dict) -> Any:
    """An NNX class as a linen module through Flax's bridge, its construction tried once abstractly (no arrays) so
    a wrong option fails here, naming the key, not inside the first compiled step."""
    from flax import nnx
    from flax.core import FrozenDict

    try:
        nnx.eval_shape(lambda: target(**kwargs, rngs=nnx.Rngs(0)))
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key 'model.options': constructing {name!r} failed: {e}") from None
    return nnx.bridge.ToLinen(target, kwargs=FrozenDict(kwargs))


def _call_of(module: Any) -> Any:
    """The `__call__` jaxdl's arguments reach: an NNX model's own, through the bridge."""
    return getattr(module, 'nnx_class', type(module)).__call__


@dataclasses.dataclass(frozen=True)
class ModelApply:
    """`module.apply(variables, images, train=...)`, passing `axis_name` only to a module whose `__call__` takes
    it. Hashable by the module's value, so a jitted step that holds it compiles once per model."""

    module: Any

    @functools.cached_property
    def takes_axis_name(self) -> bool:
        takes = keyword_parameters(_call_of(self.module))
        return takes is None or 'axis_name' in takes

    def __call__(
        self, variables: dict, images: Any, *, train: bool = False, axis_name: str | None = None, **kwargs: Any
    ) -> Any:
        if axis_name is not None and self.takes_axis_name:
            kwargs['axis_name'] = axis_name
        return self.module.apply(variables, images, train=train, **kwargs)

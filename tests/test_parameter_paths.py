"""One way to name parts of a model: optimizer groups, sharding rules and transfer.reinitialize select the same
leaves for the same pattern, by the matching of jaxdl.parameter_paths."""
import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, PartitionSpec as P

from jaxdl import parameter_paths
from jaxdl.errors import ConfigError
from jaxdl.optim import group_multipliers
from jaxdl.train import sharding
from jaxdl.transfer import transfer_variables

PARAMS = {'backbone': {'Conv_0': {'kernel': np.zeros((3, 3, 1, 8)), 'bias': np.zeros(8)},
                       'Conv_01': {'kernel': np.zeros((3, 3, 8, 8))},
                       'block_1': {'Dense_0': {'kernel': np.zeros((8, 8))}}},
          'head': {'Dense_0': {'kernel': np.zeros((8, 4)), 'bias': np.zeros(4)}}}


def test_a_pattern_matches_a_whole_path_or_a_leading_part_of_it_up_to_a_slash():
    matches = lambda pattern: sorted(p for p in parameter_paths.flat_paths(PARAMS)
                                     if parameter_paths.path_matches(pattern, p))
    assert matches('backbone/Conv_0') == ['backbone/Conv_0/bias', 'backbone/Conv_0/kernel']  # not Conv_01
    assert matches('head') == matches('head/.*') == ['head/Dense_0/bias', 'head/Dense_0/kernel']
    assert matches('Dense_0') == []  # a pattern starts at the root
    assert matches('.*/Dense_0/kernel') == ['backbone/block_1/Dense_0/kernel', 'head/Dense_0/kernel']
    assert parameter_paths.first_match(['head', '.*kernel', 'head/Dense_0'], 'head/Dense_0/kernel') == 0
    assert parameter_paths.paths_look_like(PARAMS) == 'backbone/..., head/...'


@pytest.mark.parametrize('pattern', ['backbone/Conv_0', 'backbone/block_1', '.*/Dense_0'])
def test_groups_sharding_rules_and_transfer_select_the_same_leaves(pattern):
    paths = parameter_paths.flat_paths(PARAMS)
    expected = {p for p in paths if parameter_paths.path_matches(pattern, p)}

    frozen = parameter_paths.flat_paths(group_multipliers([(pattern, 0.0)])(PARAMS))
    assert {p for p, multiplier in frozen.items() if multiplier == 0.0} == expected

    # A two-device fsdp mesh in the abstract (the specs need only its axis sizes): matched leaves split, the rest
    # (every leaf below the huge minimum size) replicated.
    specs = sharding.leaf_specs(PARAMS, AbstractMesh((2,), ('fsdp',)), [(pattern, 'auto')], min_size=10 ** 9)
    split = parameter_paths.flat_paths(jax.tree.map(lambda spec: spec != P(), specs, is_leaf=lambda x: isinstance(x, P)))
    assert {p for p, is_split in split.items() if is_split} == expected

    new = {'params': PARAMS, 'model_state': {}}
    _, report = transfer_variables(new, new, (pattern,))
    assert {p.removeprefix('params/') for p in report.reinitialized} == expected


def test_a_pattern_that_matches_nothing_is_named_with_what_paths_look_like():
    with pytest.raises(ConfigError, match=r"\['backbone/conv_0'\] match no parameter; paths look like "
                                          r"backbone/\.\.\., head/\.\.\."):
        group_multipliers([('backbone/conv_0', 0.5)])(PARAMS)

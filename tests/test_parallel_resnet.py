"""The BatchNorm ResNet trained with pmap, sharded and shard_map on 8 CPU devices equals single-device training
within the computation's own float noise (the check: tests/test_parallel.py)."""
import pytest

from test_parallel import check_parallel_training_matches_single_device

pytestmark = pytest.mark.slow


def test_pmap_and_sharded_match_single_device_with_batch_norm():
    check_parallel_training_matches_single_device('resnet')

"""What is public (CHANGELOG.md): every name `jaxdl` exports resolves, and a moved name keeps working for one minor
version with a DeprecationWarning naming its new home."""
import warnings

import pytest

import jaxdl


def test_every_exported_name_resolves():
    for name in jaxdl.__all__:
        assert getattr(jaxdl, name) is not None, name


def test_a_moved_name_warns_with_its_new_home_and_is_the_same_object():
    import jaxdl.evaluation
    from jaxdl import runs
    from jaxdl.train import evaluation
    for name, home in (('load_run', runs), ('evaluate_run', runs), ('Run', runs), ('evaluate', evaluation),
                       ('predict', evaluation)):
        with pytest.warns(DeprecationWarning, match=rf'jaxdl.evaluation.{name} moved to {home.__name__}.{name}; '
                                                    r'the old name goes in jaxdl 0.2.0'):
            assert getattr(jaxdl.evaluation, name) is getattr(home, name)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(AttributeError, match="module jaxdl.evaluation has no attribute 'fit'"):
            jaxdl.evaluation.fit  # noqa: B018

"""The loop's seams: evaluators (validation, extra splits at their own cadence, the test once) and hooks called at
the loop's named moments, in order, with the loop's own records among them."""
import pytest

from jaxdl.config import ConfigError, validate
from jaxdl.logging import read_jsonl
from jaxdl.train.hooks import Hook
from jaxdl.train.loop import fit


class Moments(Hook):
    """Records every moment the loop announces."""

    def __init__(self):
        self.seen = []

    def after_dispatch(self, run, step, metrics):
        self.seen.append(('dispatch', step))

    def after_step(self, run, step, evaluating):
        self.seen.append(('step', step, evaluating))

    def evaluation_batch(self, run, name, step, index):
        self.seen.append(('batch', name, step, index))

    def before_save(self, run, step):
        # The loop's own training records run first: the row of this step is on disk before the save.
        self.seen.append(('save', step, max(r['step'] for r in read_jsonl(run.log.path) if r['split'] == 'train')))

    def after_summary(self, run, summary):
        self.seen.append(('summary', summary['selected_step']))


def test_extra_splits_are_scored_at_their_cadence_and_hooks_see_every_moment_in_order(make_config, tmp_path):
    # digits: 1258 training examples, 19 steps an epoch at 64; 180 validation and 359 test examples at 128 a batch.
    config = make_config(eval__splits=('train[:300]',), eval__every='10 steps', train__duration='2 epochs',
                         train__log_every='4 steps', train__checkpoint_every='8 steps')
    moments = Moments()
    result = fit(config, tmp_path / 'run', show_progress=False, hooks=[moments])
    records = read_jsonl(tmp_path / 'run' / 'metrics.jsonl')
    extra = [r for r in records if r['split'] == 'train[:300]']
    assert [r['step'] for r in extra] == [10, 20, 30, 38] and all(r['count'] == 300 for r in extra)
    assert [r['step'] for r in records if r['split'] == 'validation'] == [19, 38]
    assert [r['split'] for r in records].count('test') == 1 and result.summary['test']['count'] == 359

    steps = [m for m in moments.seen if m[0] == 'step']
    assert [m[1] for m in steps] == list(range(1, 39))
    assert {m[1] for m in steps if m[2]} == {10, 19, 20, 30, 38}  # evaluating: any evaluator is due
    assert [m[1] for m in moments.seen if m[0] == 'dispatch'] == list(range(1, 39))
    batches = [m for m in moments.seen if m[0] == 'batch']
    assert [m[3] for m in batches if m[1] == 'validation' and m[2] == 19] == [0, 1]
    assert [m[3] for m in batches if m[1] == 'train[:300]' and m[2] == 10] == [0, 1, 2]
    assert [m[2:] for m in batches if m[1] == 'test'] == [(None, 0), (None, 1), (None, 2)]
    # Saves at 8, 16, 24 and 32 fall on log steps whose rows wait for the next dispatch: flushed before the save.
    assert [(m[1], m[2]) for m in moments.seen if m[0] == 'save'] == [(s, s) for s in (8, 16, 19, 24, 32, 38)]
    assert moments.seen[-1] == ('summary', result.summary['selected_step'])


@pytest.mark.parametrize('splits, message', [
    (('test',), "'test' is the test split, which is scored once, after training"),
    (('validation',), "'validation' is scored already"),
    (('train',), "write 'train\\[:100%\\]'"),
    (('a', 'a'), 'lists a split twice'),
])
def test_extra_splits_never_include_the_test_split_or_one_scored_already(make_config, splits, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config(eval__splits=splits))

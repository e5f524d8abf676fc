"""A hook that writes down every moment it is called at (tests/test_instruments.py), and things that are no hook."""
import json
import os

from jaxdl.train.hooks import MOMENTS, Hook


class MomentLog(Hook):
    def __init__(self):
        self.path = os.environ['JAXDL_MOMENT_LOG']
        self.seen = []

    def __getattribute__(self, name):
        if name in MOMENTS:
            def seen(run, *args):
                self.seen.append([name, *(a.get('split') if isinstance(a, dict) else a for a in args
                                          if isinstance(a, (int, str, bool, dict)) or a is None)])
                with open(self.path, 'w') as f:
                    json.dump(self.seen, f)
            return seen
        return object.__getattribute__(self, name)


NOT_A_HOOK = 'a string'


def not_a_hook_either(config):
    return 42

"""A user's runner in one file, named by `train.parallel='accumulating_runner:RUNNER'`: jaxdl's jit runner, with
every batch checked on the host for the rows it expects before it goes to the device (what a researcher might
add to find a data bug), and a count of the steps it ran."""
from jaxdl.registry import RUNNERS
from jaxdl.train.runners import RunnerSettings, StepRunner

STEPS = []


def RUNNER(task, settings: RunnerSettings) -> StepRunner:
    jit = RUNNERS.resolve('jit')(task, settings)

    def train(state, batch):
        assert batch['image'].shape[0] == batch['valid'].shape[0], 'rows of a batch disagree'
        STEPS.append(len(batch['valid']))
        return jit.train(state, batch)
    return StepRunner('checked-jit', train, jit.eval, place_state=jit.place_state, host_state=jit.host_state,
                      num_devices=jit.num_devices)

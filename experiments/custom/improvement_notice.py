"""A hook of your own (jaxdl.train.hooks): posts a message when validation improves, e.g. to a Slack or Mattermost
incoming webhook. Name it in an experiment's config, beside this file:

    config.train.hooks = ('improvement_notice:ImprovementNotice',)

and set JAXDL_NOTIFY_URL to the webhook's address (without it the message goes to the console)."""
import json
import os
import urllib.request

from jaxdl.train.hooks import Hook


class ImprovementNotice(Hook):
    def __init__(self):
        self.url = os.environ.get('JAXDL_NOTIFY_URL', '')

    def validated(self, run, step, metrics, improved):
        if not improved or not run.is_main:
            return
        figures = ', '.join(f'{k} {metrics[k]:.4f}' for k in run.task.headline if k in metrics)
        text = f'{run.workdir.name}: validation improved at step {step}: {figures}'
        if not self.url:
            run.note(text)
            return
        request = urllib.request.Request(self.url, data=json.dumps({'text': text}).encode(),
                                         headers={'Content-Type': 'application/json'})
        urllib.request.urlopen(request, timeout=10).close()

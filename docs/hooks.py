"""MkDocs hooks (mkdocs.yml `hooks:`): the pages' generated parts, made from the code at every build so they cannot
go stale. `<!-- cli-reference -->` becomes the reference of every `jaxdl` command, from the parser itself;
`<!-- config-reference -->` every key of `default_config()` with its default and the comments written beside it
in jaxdl/config.py."""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import tokenize

CLI_MARK = '<!-- cli-reference -->'
CONFIG_MARK = '<!-- config-reference -->'
API_MARK = '<!-- api-reference -->'
# The protocols a user implements (CHANGELOG.md, "What is public"), after the exported names.
PROTOCOLS = ('jaxdl.tasks.TaskDefaults', 'jaxdl.data.kinds.DataKind', 'jaxdl.data.kinds.DataKindDefaults',
             'jaxdl.train.hooks.Hook')


def on_page_markdown(markdown: str, **_) -> str:
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_reference())
    if CONFIG_MARK in markdown:
        markdown = markdown.replace(CONFIG_MARK, config_reference())
    if API_MARK in markdown:
        markdown = markdown.replace(API_MARK, api_reference())
    return markdown


# ------------------------------------------------------------------------------------------------------- the CLI


def _cell(text: str) -> str:
    return ' '.join(str(text).split()).replace('|', '\\|')


def _arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ['| argument | what it does | default |', '| --- | --- | --- |']
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ', '.join(f'`{s}`' for s in action.option_strings) or f'`{action.dest}`'
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            name += ' (' + ' \\| '.join(f'`{c}`' for c in action.choices) + ')'
        default = '' if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings else action.default
        rows.append(f'| {name} | {_cell(action.help or "")} | {_cell(default) if default != "" else ""} |')
    return rows


def cli_reference() -> str:
    from jaxdl.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    lines = ['```text', parser.format_usage().strip(), '```', '']
    for name, sub in commands.choices.items():
        lines += [f'### `jaxdl {name}`', '', _cell(helps.get(name, '')) + '.', '']
        if sub.description:
            lines += [_cell(sub.description), '']
        lines += ['```text', sub.format_usage().strip(), '```', '', *_arguments_table(sub), '']
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------- the API


def api_reference() -> str:
    """mkdocstrings' `::: path` for every name jaxdl exports (from its table of them), then the protocols."""
    import jaxdl

    exported = [f'{jaxdl._EXPORTS[name]}.{name}' for name in sorted(jaxdl._EXPORTS, key=str.lower)]
    blocks = ['## Exported by `jaxdl`', *(f'::: {path}' for path in exported), '## Protocols to implement']
    blocks += [f'::: {path}' for path in PROTOCOLS]
    return '\n\n'.join(blocks)


# ---------------------------------------------------------------------------------------------------- the config


def _comments(source: str) -> tuple[dict[int, str], set[int]]:
    """Each line's comment (1-based, relative to `source`), and the lines that hold nothing but a comment."""
    comments, alone = {}, set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            line = token.start[0]
            comments[line] = token.string.lstrip('#').strip()
            if not token.line[: token.start[1]].strip():
                alone.add(line)
    return comments, alone


def _described_keys(source: str) -> dict[str, tuple[str, str]]:
    """dotted key -> (the block of comment lines right above it, the comment after it on its last line); a section
    (`dataset.`) has its own, with the comment after its `dict(` too."""
    comments, alone = _comments(source)
    function = ast.parse(source).body[0]
    found: dict[str, tuple[str, str]] = {}

    def above(line: int) -> str:
        block = []
        while line - 1 in alone:
            line -= 1
            block.insert(0, comments[line])
        return ' '.join(block)

    def after(line: int) -> str:
        return comments[line] if line in comments and line not in alone else ''

    def visit(key: str, value: ast.expr, first: int, last: int, parent_line: int) -> None:
        own_above = above(first) if first > parent_line else ''  # not a comment on the parent's own line
        if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Call):  # ConfigDict(dict())
            opened = value.args[0].lineno
            found[key + '.'] = (own_above, after(opened) if opened != first else '')
            for keyword in value.args[0].keywords:
                assert keyword.arg is not None and keyword.value.end_lineno is not None
                visit(f'{key}.{keyword.arg}', keyword.value, keyword.lineno, keyword.value.end_lineno, first)
        else:
            found[key] = (own_above, after(last))

    for statement in function.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Attribute):
            assert statement.end_lineno is not None
            visit(statement.targets[0].attr, statement.value, statement.lineno, statement.end_lineno, 0)
    return found


def _flat(config, prefix: str = '') -> dict:
    from ml_collections import ConfigDict

    out = {}
    for key, value in config.items():
        if isinstance(value, ConfigDict) and len(value):
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value.to_dict() if isinstance(value, ConfigDict) else value
    return out


def _default(value) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return f'`{text}`'


def config_reference() -> str:
    """Every key in the order default_config() declares it, a table per section. A key with no comment of its own
    that follows a commented one in the same section shares that comment (one comment above a group of keys)."""
    from jaxdl import config as config_lib

    described = _described_keys(inspect.getsource(config_lib.default_config))
    defaults = _flat(config_lib.default_config())
    missing = sorted(set(defaults) - set(described))
    assert not missing, f'default_config keys the reference cannot place: {missing}'
    lines: list[str] = []
    section, group_comment = None, None
    for key, (block, trailing) in described.items():
        if key.endswith('.'):
            continue
        top = key.split('.')[0] if '.' in key else ''
        if top != section:
            section, group_comment = top, None
            lines += ['', f'### `{top}`' if top else '### top level', '']
            about = ' '.join(filter(None, described.get(f'{top}.', ('', ''))))
            lines += [_cell(about), ''] if about else []
            lines += ['| key | default | what it sets |', '| --- | --- | --- |']
        if block:
            group_comment = (key, key.rsplit('.', 1)[0])
        elif trailing:
            group_comment = None
        text = ' '.join(filter(None, (block, trailing)))
        if not text and group_comment and group_comment[1] == key.rsplit('.', 1)[0]:
            text = f'(with `{group_comment[0]}`, above)'
        lines.append(f'| `{key}` | {_default(defaults[key])} | {_cell(text)} |')
    return '\n'.join(lines).strip()

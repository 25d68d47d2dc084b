"""What every command's parser shares: the settings options (--config, --dry-run, KEY=VALUE), help that
shows defaults, and the dry run's description of inputs and outputs.

Nothing here imports torch or transformers, so `--help` and `--dry-run` stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """Text laid out in lines (epilogs of examples, tables) kept as written, a plain paragraph wrapped,
    and every option's default after its help (unless the help already says it, or there is none)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default == [] or default is argparse.SUPPRESS
        if "default" not in text and not nothing and action.option_strings:
            text += " (default: %(default)s)"
        return text


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand's parser that shows defaults and remembers itself (its usage goes with its errors)."""
    p = sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)
    p.set_defaults(command_parser=p)
    return p


def add_settings(p: argparse.ArgumentParser, section: str, example: str) -> None:
    """--config FILE, --dry-run and KEY=VALUE overrides of the `section:` of a study file."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"study YAML; its `{section}:` section is read (`frequnlearn config show {section}` lists every "
        "key with its default and meaning)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the inputs, the config and --out, print what would run; load and write nothing",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help=f"`{section}:` settings over the config's, e.g. {example}",
    )
    p.set_defaults(override_example=example)


def config_default(cls: type, name: str) -> str:
    """A config field's default as help text shows it: `section.key, now VALUE`."""
    from frequnlearn.config.docs import default_of

    value = default_of(next(f for f in dataclasses.fields(cls) if f.name == name))
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def changed_settings(cfg: Any) -> list[str]:
    """`key: value` of every setting of `cfg` that differs from its class default."""
    from frequnlearn.config import to_dict

    now, defaults = to_dict(cfg), to_dict(type(cfg)())
    return [f"{k}: {now[k]}" for k in now if now[k] != defaults.get(k)]


def describe_out(path: str | Path, kind: str) -> str:
    """What --out is now, in words: new (with the folders to create), or an earlier output."""
    from frequnlearn.records import OUTPUT_KINDS, output_kind

    path = Path(path)
    if not path.exists():
        missing = [p for p in [path, *path.parents] if not p.exists()]
        return f"{path} (new{'; creates ' + str(missing[-1]) if len(missing) > 1 else ''})"
    if path.is_file():
        return f"{path} (replaced: written by this command before)"
    owner = output_kind(path)
    if owner == kind:
        return f"{path} ({OUTPUT_KINDS[kind][0]} written before: reused or replaced)"
    return f"{path} (an existing directory; files of other names are kept)"


def describe_model(spec: str) -> str:
    """A model argument as a dry run can check it without loading: a local directory's files, or a hub id."""
    from frequnlearn.errors import DataError
    from frequnlearn.models.loading import TOKENIZER_FILES

    path = Path(spec).expanduser()
    if path.is_dir():
        weights = [f for f in ("config.json", "adapter_config.json") if (path / f).is_file()]
        if not weights:
            raise DataError(
                f"--model {spec}: no config.json or adapter_config.json; not a saved model directory"
            )
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise DataError(f"--model {spec}: no tokenizer files; save the tokenizer beside the weights")
        return f"{spec} (local {'LoRA adapter' if weights == ['adapter_config.json'] else 'model'})"
    if spec.startswith((".", "/", "~")) or path.exists():
        raise DataError(f"--model {spec}: no such directory")
    return f"{spec} (a hub id: not looked up in a dry run)"


def is_local(spec: str) -> bool:
    """Whether a table spec (SOURCE?filters) names a local file or directory (a dry run reads those only)."""
    return Path(str(spec).split("?", 1)[0]).expanduser().exists()


def print_dry_run(stage: str, lines: list[str], cfg: Any = None) -> None:
    """The dry run's report: what the command would read and write, and its non-default settings."""
    print(f"{stage} (dry run: nothing loaded, nothing written)")
    for line in lines:
        print(f"  {line}")
    if cfg is not None:
        changed = changed_settings(cfg)
        print("  settings: " + ("; ".join(changed) if changed else "all defaults"))
        print(f"  (every setting with its default: frequnlearn config show {stage} [--config FILE])")

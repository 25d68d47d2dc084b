"""`frequnlearn config show [STAGE] [--config FILE] [KEY=VALUE ...]`: every setting, its value, default
and meaning, as YAML a study file can start from."""

from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
import typing
from typing import Any

import yaml

from frequnlearn.cli_common import add_command

WIDTH = 100


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "config",
        help="show every setting of every stage with its default and meaning",
        description="Settings live in the sections of a study YAML (generate:, pretrain:, count:, unlearn:, "
        "evaluate:, study:, attacks:); every command reads its own section from --config FILE, then its "
        "KEY=VALUE overrides.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    show = add_command(
        actions,
        "show",
        help="print the effective settings with their defaults and meanings",
        description="Print the settings of one section (or of all), as YAML: the value in effect (from "
        "--config FILE and the overrides, else the default), a `# default:` note where it differs, and "
        "what each key means. `frequnlearn config show > study.yaml` starts a config.",
    )
    show.add_argument(
        "stage",
        nargs="?",
        metavar="STAGE",
        help="one section: " + ", ".join(sections()) + " (default: all of them)",
    )
    show.add_argument("--config", metavar="FILE", help="a study YAML whose values are shown")
    show.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides as a command takes them, e.g. unlearn.lr=0.001 (relative to STAGE when one is given)",
    )
    show.set_defaults(func=run, override_example="unlearn.lr=0.001")


def sections() -> list[str]:
    from frequnlearn.config.study import StudyConfig

    return [f.name for f in dataclasses.fields(StudyConfig)]


def run(args: argparse.Namespace) -> int:
    from frequnlearn.config import load_config
    from frequnlearn.errors import ConfigError

    stage, overrides = args.stage, list(args.overrides)
    if stage is not None and "=" in stage:  # `config show lr=1`: an override, not a section
        stage, overrides = None, [stage, *overrides]
    if stage is not None and stage not in sections():
        raise ConfigError(f"STAGE {stage!r}: not a section; use one of {', '.join(sections())}")
    if stage is None:
        cfg = load_config(args.config, overrides)
        print(describe(cfg, source=args.config))
    else:
        print(describe(load_config(args.config, overrides, section=stage), source=args.config, section=stage))
    return 0


def describe(cfg: Any, source: str | None = None, section: str | None = None) -> str:
    """YAML of `cfg` (a StudyConfig, or one section's config named `section`) with every key's
    meaning above it and its default beside it where the value differs."""
    head = f"# Effective settings: {source} over the defaults" if source else "# The default settings"
    lines = [head + "; `# default:` marks a value that differs.", ""]
    if section is None:
        for f in dataclasses.fields(cfg):
            lines += _section(f.name, getattr(cfg, f.name))
    else:
        lines += _section(section, cfg)
    return "\n".join(lines).rstrip()


def _section(name: str, cfg: Any) -> list[str]:
    from frequnlearn.config.docs import default_of, field_docs, fields_of

    cls = type(cfg)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = _comment(doc, "# ") if doc and not doc.startswith(cls.__name__ + "(") else []
    lines.append(f"{name}:")
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in fields_of(cls):
        value, default = _plain(getattr(cfg, f.name)), _plain(default_of(f))
        lines += _comment(docs.get(f.name, ""), "  # ")
        for sub in _nested(hints[f.name]):
            sub_docs = field_docs(sub)
            for g in fields_of(sub):
                text = f"{g.name} (default {_yaml(_plain(default_of(g)))}): {sub_docs[g.name]}"
                lines += _comment(text, "  #   - ", "  #     ")
        note = f"  # default: {_yaml(default)}" if value != default else ""
        lines.append(f"  {f.name}: {_yaml(value)}{note}")
    return lines + [""]


def _nested(tp: Any) -> list[type]:
    """Dataclasses inside an annotation (`LoraSettings | None`): their keys are listed too."""
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]


def _comment(text: str, prefix: str, more: str | None = None) -> list[str]:
    """`text` as comment lines starting with `prefix` (continued with `more`)."""
    if not text:
        return []
    return textwrap.wrap(text, WIDTH, initial_indent=prefix, subsequent_indent=more or prefix)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        from frequnlearn.config import to_dict

        return to_dict(value)
    return json.loads(json.dumps(value, default=str))


def _yaml(value: Any) -> str:
    """A value as one line of YAML that reads back as the same value (1e-05 as a number, not text)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True)
    return text.strip().removesuffix("...").strip()

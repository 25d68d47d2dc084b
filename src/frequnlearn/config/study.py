"""The study config: one section per stage plus `study`, which says what is compared with what."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from frequnlearn import names
from frequnlearn.config.attacks import AttacksConfig, check_against_study
from frequnlearn.config.base import MAX_EPOCHS, ConfigError, check, check_range, check_seed, load_config
from frequnlearn.config.count import CountConfig
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.generate import GenerateConfig
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.config.unlearn import UnlearnConfig, method_names


def load_plugins(specs: list[str], key: str = "plugins") -> None:
    """Import the named plugins with the loss registry's loader (`names`: the config imports no
    stage); without the registry imported they wait for the unlearning stage, which imports them."""
    if specs:
        names.load_plugins(names.FORGET_LOSS, specs, key)


def parse_method(spec: str) -> tuple[str, str]:
    """`simnpo+gd` -> ("simnpo", "gd"); a bare forget method has no retain term. Names are checked
    against the loss registry."""
    forget, _, retain = spec.partition("+")
    forget_methods, retain_losses = method_names() or ([forget], [retain or "none"])
    check(
        forget in forget_methods and (retain or "none") in retain_losses,
        "methods",
        f"{spec!r} is not FORGET[+RETAIN] with FORGET in {', '.join(forget_methods)} "
        f"and RETAIN in {', '.join(retain_losses)}",
    )
    return forget, retain or "none"


def known_probe(setting: str) -> str:
    """The probe whose verdict says which items a model knows (the `known` selection, and what an
    attack recovers): the trained question for a model pretrained here, the paraphrase for a real
    model. One rule, so that the study's selection and the report's recovery count the same items."""
    return "paraphrase" if setting == "real" else "question"


@dataclass
class PrimaryEndpoints:
    """The one endpoint per finding that carries its verdict; every other comparison the report makes
    is exploratory and Holm-adjusted within its finding. Declared before the study runs."""

    # Both findings: the method (null: the first of study.methods).
    method: str | None = None
    # Finding 1: the total frequency effect (high minus low net drop; on an exposure grid of >= 3
    # levels, its slope against log frequency) on this probe, known items ...
    frequency_probe: Literal["question", "paraphrase", "bio"] = "question"
    # ... for this model size (null: every size pooled, each model a unit of the interval).
    frequency_size: str | None = None
    # Finding 2: the slope of the share of forgotten items still preferred by likelihood against log
    # parameters, in this view, read where the targets' normalised generation accuracy first is <= this.
    misalignment_view: Literal["rank1", "truth_ratio", "logprob"] = "rank1"
    misalignment_forgetting: float = 0.5
    misalignment_probe: Literal["question", "paraphrase", "bio"] = "question"

    def validate(self) -> None:
        check(
            0.0 < self.misalignment_forgetting < 1.0,
            "misalignment_forgetting",
            "must be within (0, 1), e.g. 0.5",
        )


@dataclass
class SuiteModel:
    """One size of a real model suite (`study.models`): every size is scored and unlearned with the
    same settings, so that the only thing that changes along the suite is the model."""

    # Hub id or local path, e.g. EleutherAI/pythia-410m.
    id: str
    # Hub branch, tag or commit (null: the default branch), e.g. step143000 for Pythia's last step.
    revision: str | None = None
    # Passes this size made over the counted corpus: its pretraining tokens drawn from that corpus
    # over the corpus's size, both in the model's own tokens. An item's expected exposure for this
    # size is its count times this (the index is one corpus; sizes that saw more of it saw more copies).
    corpus_epochs: float = 1.0
    # Name of the size in run directories and the report (null: the id's last part, e.g. pythia-410m).
    name: str | None = None

    @property
    def tag(self) -> str:
        """The size's name, made safe for a directory (one plain name)."""
        base = self.name or Path(self.id.rstrip("/")).name or "model"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "model"

    def validate(self) -> None:
        check(bool(self.id.strip()), "id", "give a hub id or a local path, e.g. EleutherAI/pythia-70m")
        check(self.corpus_epochs > 0, "corpus_epochs", f"must be > 0, got {self.corpus_epochs}")
        from frequnlearn.records import is_plain_name

        # The name is a directory of every run of the size: one plain name, never a path.
        check(
            is_plain_name(self.tag) and self.tag not in (".", ".."),
            "name",
            f"{self.tag!r} is not a plain name (letters, digits, _ . - and not starting with '.'); "
            "each size names a directory of its runs",
        )


@dataclass
class StudyOptions:
    """What the study compares.

    `setting: synthetic` generates people and pretrains `model_sizes` from scratch for every seed;
    `setting: real` takes `model` as it is and a QA table (`items`) whose frequency was counted.
    """

    # synthetic (generate and pretrain) or real (a given model and QA table), as above.
    setting: Literal["synthetic", "real"] = "synthetic"
    # One repetition per seed: its own world and models (synthetic) or its own unlearning sets (real).
    seeds: list[int] = field(default_factory=lambda: [0])
    # Generated worlds: each a generate seed (other people, other names, other facts), with its own
    # data and its own models of every size and seed (tags end in -w<seed>). Empty: one world, of
    # generate.seed (the tags and paths of a one-world study name no world).
    worlds: list[int] = field(default_factory=list)
    # Pretraining presets studied (synthetic setting), e.g. [mini, tiny, small].
    model_sizes: list[str] = field(default_factory=lambda: ["tiny", "small"])
    # Unlearning methods as FORGET+RETAIN, e.g. ga+gd, simnpo+gd.
    methods: list[str] = field(default_factory=lambda: ["ga+gd", "simnpo+gd"])
    # Python files or modules to import first, whose losses register themselves (methods brought from
    # outside; docs/methods.md). Only what is listed is imported; paths are relative to the working directory.
    plugins: list[str] = field(default_factory=list)
    # Unlearn settings for one method spec over the `unlearn:` section, e.g. {rmu+act: {lr: 1e-3}}
    # (a learning rate chosen per method for a matched retain cost).
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Items are split into levels by this field; each listed level is unlearned in its own run.
    compare_by: Literal["group", "frequency", "bucket"] = "group"
    levels: list[str] = field(default_factory=lambda: ["forget_high", "forget_low"])
    # The attribute whose questions are unlearned and scored (null: every attribute).
    attribute: str | None = "employer"
    # known: only items the model answers before unlearning (equal-size sets); all: the whole level.
    selections: list[Literal["known", "all"]] = field(default_factory=lambda: ["known", "all"])
    # Items unlearned per run (null: as many as every level allows); each run also evaluates a
    # control set of the same size from its level, which it never unlearns.
    forget_size: int | None = None
    # Retain people in the retain loss (null: every retain person not in eval_retain).
    retain_size: int | None = None
    # Retain and utility people evaluated along the way; the evaluated retain people are never in
    # the retain loss.
    eval_retain_size: int = 40
    # Utility people evaluated along the way (never unlearned, never in the retain loss).
    eval_utility_size: int = 40
    # Pretraining epochs per preset (sizes not listed use pretrain.epochs): a smaller model may need
    # more epochs to know the frequent people as well as a larger one.
    epochs_by_size: dict[str, float] = field(default_factory=dict)
    # Unlearning counts as done below this forget accuracy ...
    forget_threshold: float = 0.1
    # ... and retain accuracy may fall this far below its start before the method "wrecks" it.
    retain_tolerance: float = 0.1
    # Bootstrap resamples of the report's intervals.
    n_boot: int = 1000
    # The declared primary endpoint of each finding (the report's first lines).
    primary: PrimaryEndpoints = field(default_factory=PrimaryEndpoints)
    # Unlearned weights are large and rarely needed after evaluation; keep them only when asked.
    keep_models: bool = False
    # Torch threads for every stage (null: torch's default, the machine's cores, as the process that
    # starts the study counts them). The thread count changes summation order, so pinning it keeps the
    # numbers the same on any machine; it is part of every pretrained model's key.
    num_threads: int | None = None
    # Who runs the tasks: local (this process, one at a time) or ray (each task a Ray task with the
    # CPUs of its threads and a GPU where the cluster has them; with num_threads: 1 a local cluster
    # runs one task per core).
    executor: Literal["local", "ray"] = "local"
    # ray: local (a cluster on this machine for the study), auto (the one `ray start` runs here) or
    # ray://HOST:PORT (a remote cluster; the run directory must be on a filesystem its nodes share).
    ray_address: str = "local"
    # ray: times a task is rerun after its worker dies (killed, out of memory, node lost).
    max_retries: int = 2
    # The real setting.
    # Hub id or local path of the model studied.
    model: str | None = None
    # A suite of sizes instead of one model: each entry {id, revision, corpus_epochs, name}, each
    # scored and unlearned with the same settings (e.g. Pythia 70M..12B; configs/pythia.yaml).
    models: list[SuiteModel] = field(default_factory=list)
    # A GGUF file of that model to load instead of its safetensors.
    gguf_file: str | None = None
    # The QA table: a path, builtin:NAME or a hub dataset.
    items: str | None = None
    # QA table of the retain set (null: half of the items outside the studied levels).
    retain_items: str | None = None
    # How QA is written for the model: plain, olmo, chat or a {question}/{answer} string.
    prompt_format: str = "plain"
    # Weights' dtype of the loaded models (auto: float32 on CPU, the checkpoint's on GPU).
    dtype: str = "auto"

    def suite(self) -> list[SuiteModel]:
        """The real setting's models: `models`, or the one `model` as a suite of one (seen the whole
        corpus once). Empty in the synthetic setting."""
        if self.models:
            return list(self.models)
        if self.setting != "real" or self.model is None:
            return []
        return [SuiteModel(id=self.model, name=Path(self.model).name)]

    def validate(self) -> None:
        check(len(self.seeds) >= 1, "seeds", "give at least one seed")
        check_seed(self.seeds, "seeds")
        check(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or null")
        check(
            self.ray_address in ("local", "auto") or self.ray_address.startswith("ray://"),
            "ray_address",
            f"{self.ray_address!r}: use local, auto or ray://HOST:PORT",
        )
        check(self.max_retries >= 0, "max_retries", "must be >= 0")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", "seeds must be distinct")
        check(len(set(self.worlds)) == len(self.worlds), "worlds", "worlds must be distinct")
        check(all(0 <= w < 2**32 for w in self.worlds), "worlds", "each world is a seed in [0, 2^32)")
        check(
            not self.worlds or self.setting == "synthetic",
            "worlds",
            "only for setting: synthetic (the real setting has one world, its QA table)",
        )
        check(len(self.methods) >= 1, "methods", "give at least one method, e.g. [ga+gd, simnpo+gd]")
        load_plugins(self.plugins)
        for spec in self.methods:
            parse_method(spec)
        for spec in self.method_overrides:
            check(spec in self.methods, "method_overrides", f"{spec!r} is not in methods {self.methods}")
        from frequnlearn.records import is_plain_name

        # Each level names a directory of every unlearning run: one plain name, never a path.
        for level in self.levels:
            check(
                is_plain_name(level),
                "levels",
                f"{level!r} is not a plain name (letters, digits, _ . + - = @ , and not starting with '.'); "
                "each level names a directory of its runs",
            )
        check(
            len(self.levels) >= 2 and len(set(self.levels)) == len(self.levels),
            "levels",
            f"a comparison needs at least two distinct levels, e.g. [forget_high, forget_low]; got {self.levels}",
        )
        check(len(self.selections) >= 1, "selections", "give known, all or both")
        check(0.0 <= self.forget_threshold <= 1.0, "forget_threshold", "must be within [0, 1]")
        check(0.0 <= self.retain_tolerance <= 1.0, "retain_tolerance", "must be within [0, 1]")
        check(self.forget_size is None or self.forget_size >= 1, "forget_size", "must be >= 1 or null")
        check(self.retain_size is None or self.retain_size >= 1, "retain_size", "must be >= 1 or null")
        check(self.eval_retain_size >= 0, "eval_retain_size", "must be >= 0")
        check(self.eval_utility_size >= 0, "eval_utility_size", "must be >= 0")
        check(self.n_boot >= 100, "n_boot", "use at least 100 bootstrap resamples")
        check_range(self.n_boot, "n_boot", 100, 100_000, " bootstrap resamples")
        p = self.primary
        check(
            p.method is None or p.method in self.methods, "primary.method", f"must be one of {self.methods}"
        )
        check(
            p.frequency_size is None or p.frequency_size in self.model_sizes,
            "primary.frequency_size",
            f"must be one of {self.model_sizes} or null (every size pooled)",
        )
        if self.setting == "synthetic":
            check(len(self.model_sizes) >= 1, "model_sizes", "give at least one pretrain preset")
            check(
                self.model is None and not self.models,
                "models" if self.models else "model",
                "only for setting: real (the synthetic setting pretrains its own)",
            )
            check(
                self.compare_by != "bucket",
                "compare_by",
                "the synthetic setting compares 'group' or 'frequency' (exposure) levels",
            )
            from frequnlearn.models.presets import PRESETS

            # Keyed by preset, not by model_sizes: an override of model_sizes keeps the config valid.
            for size, epochs in self.epochs_by_size.items():
                check(
                    size in PRESETS,
                    "epochs_by_size",
                    f"{size!r} is not a preset; use some of {list(PRESETS)}",
                )
                check(0 < epochs <= MAX_EPOCHS, "epochs_by_size", f"{size}: must be > 0 and <= {MAX_EPOCHS}")
        else:
            check(
                self.model is not None or bool(self.models),
                "model",
                "setting: real needs a model (hub id or local path) or a suite in study.models",
            )
            check(
                self.model is None or not self.models,
                "models",
                "give either study.model (one model) or study.models (a suite), not both",
            )
            check(
                not (self.models and self.gguf_file),
                "gguf_file",
                "a GGUF file names one model's file; a suite in study.models loads each size's weights",
            )
            tags = [m.tag for m in self.models]
            check(
                len(set(tags)) == len(tags),
                "models",
                f"two sizes share the name {next((t for t in tags if tags.count(t) > 1), '')!r}; "
                "give them distinct `name`s",
            )
            check(
                self.items is not None,
                "items",
                "setting: real needs a QA table (path, 'builtin:NAME' or hub dataset)",
            )
            check(
                self.compare_by != "group",
                "compare_by",
                "setting: real compares 'bucket' or 'frequency' levels",
            )
            check(
                not self.epochs_by_size,
                "epochs_by_size",
                "only for setting: synthetic (the real setting pretrains nothing)",
            )


@dataclass
class StudyConfig:
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    count: CountConfig = field(default_factory=CountConfig)
    study: StudyOptions = field(default_factory=StudyOptions)
    attacks: AttacksConfig = field(default_factory=AttacksConfig)

    @staticmethod
    def preload(data: dict[str, Any]) -> None:
        """Import `study.plugins` before any section is read, so that the `unlearn:` section may name a
        plugin's method whatever the order of the sections."""
        study = data.get("study")
        plugins = study.get("plugins") if isinstance(study, dict) else None
        if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
            load_plugins(plugins, key="study.plugins")

    def method_unlearn(self, spec: str) -> UnlearnConfig:
        """The `unlearn:` section with `study.method_overrides[spec]` applied (validated)."""
        from frequnlearn.config.base import from_dict, to_dict

        over = self.study.method_overrides.get(spec, {})
        for key in ("method", "retain_loss", "seed", "prompt_format"):
            check(key not in over, f"study.method_overrides.{spec}.{key}", "is set by the study; remove it")
        return from_dict(
            UnlearnConfig, {**to_dict(self.unlearn), **over}, prefix=f"study.method_overrides.{spec}."
        )

    def pretrain_for(self, size: str, seed: int) -> PretrainConfig:
        """The pretrain config of one studied model: its preset, seed and (if given) its own epochs."""
        import dataclasses

        epochs = self.study.epochs_by_size.get(size, self.pretrain.epochs)
        threads = self.pretrain.num_threads or self.study.num_threads
        return dataclasses.replace(self.pretrain, preset=size, seed=seed, epochs=epochs, num_threads=threads)

    def validate(self) -> None:
        s = self.study
        check_against_study(self)
        for spec in s.method_overrides:
            self.method_unlearn(spec)
        for spec in s.methods:
            u = self.method_unlearn(spec)
            check(
                u.lora is None or u.lora_merge or not self.attacks.active,
                "unlearn.lora_merge",
                "the attacks start from the unlearned weights; with lora, set lora_merge: true",
            )
        # The study measures utility through the named lm-eval tasks only (its utility people are
        # scored per item along each trajectory).
        check(
            "utility" not in self.evaluate.metrics or bool(self.evaluate.utility_tasks),
            "evaluate.utility_tasks",
            "metrics has utility but no task is named; name one (e.g. [frequnlearn_capitals]) or drop utility",
        )
        if s.setting != "synthetic":
            return
        # The pretrain section is validated against its own preset; each studied size must pass too.
        for size in s.model_sizes:
            try:
                self.pretrain_for(size, self.pretrain.seed).validate()
            except ConfigError as err:
                raise ConfigError(f"study.model_sizes: {size}: pretrain.{err}") from None
        if s.attribute is not None:
            check(
                s.attribute in self.generate.attributes,
                "study.attribute",
                f"must be one of the generated attributes {list(self.generate.attributes)}",
            )
        # Only the forget groups are unlearned: retain and utility people are the retain and
        # evaluation sets of every run.
        from frequnlearn.records import FORGET_GROUPS

        if s.compare_by == "group":
            for level in s.levels:
                check(
                    level in FORGET_GROUPS,
                    "study.levels",
                    f"{level!r} is not a forget group; use some of {list(FORGET_GROUPS)}",
                )
        else:
            g = self.generate
            grid = g.exposure_levels if g.exposure_levels is not None else sorted({1, g.high_exposure})
            exposures = [f"{x:g}" for x in grid]
            for level in s.levels:
                check(
                    level in exposures,
                    "study.levels",
                    f"{level!r} is not an exposure of the forget groups; use some of {exposures}",
                )
        from frequnlearn.config.generate import group_sizes

        n_retain = group_sizes(self.generate.n_people, self.generate.group_fractions)["retain"]
        needs_retain = any(parse_method(m)[1] != "none" for m in s.methods)
        check(
            not needs_retain or s.eval_retain_size < n_retain,
            "study.eval_retain_size",
            f"{s.eval_retain_size} evaluated retain people leave none of the {n_retain} for the retain loss; "
            "lower it or raise generate.n_people",
        )


def load_study_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    return load_config(StudyConfig, path, overrides)

"""The one map of a study's run directory: where every stage's output goes and every file a reader finds.

    RUN_DIR/
      study.json            what ran: config, its key, command, commit, versions, hardware
      timings.json          measured seconds of each task, kept across resumed parts
      tasks.jsonl           one line when a task starts and one when it ends (process, host, attempt)
      .study.lock           the `frequnlearn study` process that holds the directory
      data/                 generated data (one world) or data-w<seed>/ (one per world)
      data-oracle/          the same data without the studied people's biographies (data-oracle-w<seed>/)
      items/                real setting: loaded.jsonl (the table as loaded), items.jsonl (counted)
      models/<tag>/         a pretrained model; baseline/ (its scores before unlearning);
                            oracle/ (the never-learned reference, with its own baseline/)
      unlearn/<run>/        an unlearning run; attacks/ (relearning and quantization of its weights)
      report/               the report

Each stage names the files it writes inside the directory it is given; the layout is where the study
puts those directories and where a reader (the report) finds them, so no other module composes a
run-directory path or scans the directory itself. It lives beside `records`, not inside `study/`,
because both the study (which writes the directory) and the report (which reads it) use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from frequnlearn.records import STAGE_FILE

# The run directory's own names.
STUDY_RECORD = "study.json"
TIMINGS = "timings.json"
TASK_LOG = "tasks.jsonl"
LOCK = ".study.lock"
DATA_DIR = "data"
ORACLE_DATA_DIR = "data-oracle"
ITEMS_DIR = "items"
LOADED_ITEMS = "loaded.jsonl"
COUNTED_ITEMS = "items.jsonl"
MODELS_DIR = "models"
BASELINE_DIR = "baseline"
ORACLE_DIR = "oracle"
UNLEARN_DIR = "unlearn"
ATTACKS_DIR = "attacks"
REPORT_DIR = "report"
# Files the stages write that readers of the run directory open (each stage spells its own).
SCORES = "scores.parquet"
TRAJECTORY = "trajectory.parquet"
RUN_RECORD = "run.json"
UTILITY = "utility.json"
PRETRAIN_METRICS = "metrics.jsonl"
DATA_MANIFEST = "manifest.json"
ATTACKS_RECORD = "attacks.json"
SETS = "sets.json"
UNLEARNED_MODEL = "model"
# A scratch directory of a write that was cut short is no output.
_SCRATCH_SUFFIXES = (".tmp", ".partial")


def world_suffix(world: int | None) -> str:
    """`-w<seed>` for a study of several generated worlds; nothing for one (its paths stay as they were)."""
    return "" if world is None else f"-w{world}"


def pretrain_task_name(size: str, seeds: list[int], world: int | None = None) -> str:
    """A pretrain task's name: its model's tag, or `<size>-s0+s1+...[-w<world>]` for an ensemble
    (`pretrained_tags` reads it back)."""
    return f"{size}-" + "+".join(f"s{x}" for x in seeds) + world_suffix(world)


def pretrained_tags(task_name: str) -> list[str]:
    """The models a pretrain task makes, from its name (`pretrain_task_name`): itself, or each member
    of an ensemble."""
    import re

    match = re.fullmatch(r"(?P<size>.+?)-(?P<seeds>s\d+(?:\+s\d+)+)(?P<world>-w\d+)?", task_name)
    if match is None:
        return [task_name]
    world = match["world"] or ""
    return [f"{match['size']}-{seed}{world}" for seed in match["seeds"].split("+")]


@dataclass(frozen=True)
class RunLayout:
    """Every path of the study run directory `root`.

    With `several_worlds` each generated world (a generate seed) has its own data directories; a study
    of one world keeps the plain names, so its run directory reads as it always did.
    """

    root: Path
    several_worlds: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- the study's own files
    @property
    def study_record(self) -> Path:
        return self.root / STUDY_RECORD

    @property
    def timings(self) -> Path:
        return self.root / TIMINGS

    @property
    def task_log(self) -> Path:
        return self.root / TASK_LOG

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    # ---- data
    def data(self, world: int | None = None) -> Path:
        return self.root / f"{DATA_DIR}{self._suffix(world)}"

    def oracle_data(self, world: int | None = None) -> Path:
        return self.root / f"{ORACLE_DATA_DIR}{self._suffix(world)}"

    def _suffix(self, world: int | None) -> str:
        return world_suffix(world if self.several_worlds else None)

    def data_manifest(self, world: int | None = None) -> Path:
        return self.data(world) / DATA_MANIFEST

    def data_manifests(self) -> list[Path]:
        """The manifest of every generated world's data directory there is."""
        dirs = [self.data(), *sorted(self.root.glob(f"{DATA_DIR}-w*"))]
        return [d / DATA_MANIFEST for d in dirs if (d / DATA_MANIFEST).is_file()]

    @property
    def items(self) -> Path:
        return self.root / ITEMS_DIR

    @property
    def loaded_items(self) -> Path:
        return self.items / LOADED_ITEMS

    @property
    def counted_items(self) -> Path:
        return self.items / COUNTED_ITEMS

    # ---- models
    def model(self, tag: str) -> Path:
        return self.root / MODELS_DIR / tag

    def baseline(self, tag: str) -> Path:
        return self.model(tag) / BASELINE_DIR

    def oracle(self, tag: str) -> Path:
        return self.model(tag) / ORACLE_DIR

    def oracle_baseline(self, tag: str) -> Path:
        return self.oracle(tag) / BASELINE_DIR

    def baseline_scores(self, tag: str) -> Path:
        return self.scores(self.model(tag), BASELINE_DIR)

    def model_tags(self) -> list[str]:
        """Tags of the model directories there are, sorted (hidden scratch directories of a run in
        progress are not models)."""
        root = self.root / MODELS_DIR
        return (
            sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".") if root.is_dir() else []
        )

    def model_scores(self, kind: str) -> list[tuple[str, Path]]:
        """(model tag, scores) of every model's `baseline` or `oracle` scoring that was written."""
        found = [(tag, self.scores(self.model(tag), kind)) for tag in self.model_tags()]
        return [(tag, path) for tag, path in found if path.is_file()]

    def baseline_utility(self) -> list[tuple[str, Path]]:
        """(model tag, utility.json) of every baseline that measured utility."""
        found = [(tag, self.model_utility(self.model(tag))) for tag in self.model_tags()]
        return [(tag, path) for tag, path in found if path.is_file()]

    def model_record(self, tag: str) -> Path:
        return self.pretrain_record(self.model(tag))

    def pretrain_log(self, tag: str) -> Path:
        return self.pretrain_metrics_of(self.model(tag))

    def model_records(self) -> list[tuple[str, Path]]:
        """(model tag, run.json) of every pretraining that finished."""
        found = [(tag, self.model_record(tag)) for tag in self.model_tags()]
        return [(tag, path) for tag, path in found if path.is_file()]

    def pretrain_metrics(self) -> list[tuple[str, Path]]:
        """(model tag, metrics.jsonl) of every pretraining that logged."""
        found = [(tag, self.pretrain_log(tag)) for tag in self.model_tags()]
        return [(tag, path) for tag, path in found if path.is_file()]

    # ---- the files of one model directory (models/<tag>)
    @staticmethod
    def pretrain_record(model: Path) -> Path:
        return model / RUN_RECORD

    @staticmethod
    def pretrain_metrics_of(model: Path) -> Path:
        return model / PRETRAIN_METRICS

    @staticmethod
    def scores(model: Path, kind: str) -> Path:
        """A model's per-item scores before unlearning (`baseline`) or of its never-learned twin
        (`oracle`, scored as a baseline is)."""
        if kind == ORACLE_DIR:
            return model / ORACLE_DIR / BASELINE_DIR / SCORES
        if kind == BASELINE_DIR:
            return model / BASELINE_DIR / SCORES
        raise ValueError(f"scores of {kind!r}: a model has {BASELINE_DIR} and {ORACLE_DIR} scores")

    @staticmethod
    def model_utility(model: Path) -> Path:
        return model / BASELINE_DIR / UTILITY

    # ---- unlearning runs and their attacks
    @property
    def unlearn_root(self) -> Path:
        return self.root / UNLEARN_DIR

    def unlearn(self, name: str) -> Path:
        return self.unlearn_root / name

    def attacks(self, name: str) -> Path:
        return self.unlearn(name) / ATTACKS_DIR

    def unlearn_runs(self) -> list[Path]:
        """Every unlearning run's directory (one holding its record or done marker), in path order;
        scratch directories of a write cut short and attack directories are not runs, nor what a run
        holds (its model/ keeps a copy of the run's record)."""
        root = self.unlearn_root
        found = {p.parent for name in (RUN_RECORD, STAGE_FILE) for p in root.glob(f"**/{name}")}
        return [
            path
            for path in sorted(found)
            if not any(
                p.endswith(_SCRATCH_SUFFIXES) or p == ATTACKS_DIR for p in path.relative_to(root).parts
            )
            and not any(parent in found for parent in path.parents)
        ]

    @staticmethod
    def trajectory(run: Path) -> Path:
        return run / TRAJECTORY

    @staticmethod
    def run_record(run: Path) -> Path:
        return run / RUN_RECORD

    @staticmethod
    def run_utility(run: Path) -> Path:
        return run / UTILITY

    @staticmethod
    def run_sets(run: Path) -> Path:
        return run / SETS

    @staticmethod
    def unlearned_model(run: Path) -> Path:
        return run / UNLEARNED_MODEL

    @staticmethod
    def attack_scores(run: Path) -> Path:
        return run / ATTACKS_DIR / SCORES

    @staticmethod
    def attack_record(run: Path) -> Path:
        return run / ATTACKS_DIR / ATTACKS_RECORD

    def attack_records(self) -> Iterator[Path]:
        """Every attack record written under the unlearning runs, in path order."""
        yield from sorted(self.unlearn_root.glob(f"**/{ATTACKS_DIR}/{ATTACKS_RECORD}"))

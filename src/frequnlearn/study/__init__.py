"""The whole experiment from one config: the plan (`plan`), every task's key (`keys`), which items
each run sees (`sets`), what each task does (`tasks`), the resumable execution (`run`) and its
command (`cli`)."""

from frequnlearn.study.keys import Keys
from frequnlearn.study.plan import Task, describe_plan, inputs_of, model_tag, param_span, plan, run_name
from frequnlearn.study.run import run_study
from frequnlearn.study.sets import (
    EVAL_ROLES,
    SETS_FORMAT,
    NothingToUnlearn,
    level_of,
    level_pools,
    select_sets,
)
from frequnlearn.study.status import Estimate, Progress

__all__ = [
    "EVAL_ROLES",
    "SETS_FORMAT",
    "Estimate",
    "Keys",
    "NothingToUnlearn",
    "Progress",
    "Task",
    "describe_plan",
    "inputs_of",
    "level_of",
    "level_pools",
    "model_tag",
    "param_span",
    "plan",
    "run_name",
    "run_study",
    "select_sets",
]

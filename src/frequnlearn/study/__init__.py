"""The whole experiment from one config: the plan (`plan`), which items each run sees (`sets`), the
resumable execution (`run`) and its command (`cli`)."""

from frequnlearn.study.plan import Task, describe_plan, inputs_of, model_tag, param_span, plan, run_name
from frequnlearn.study.run import TIMINGS_FILE, Study
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
    "TIMINGS_FILE",
    "Estimate",
    "NothingToUnlearn",
    "Progress",
    "Study",
    "Task",
    "describe_plan",
    "inputs_of",
    "level_of",
    "level_pools",
    "model_tag",
    "param_span",
    "plan",
    "run_name",
    "select_sets",
]

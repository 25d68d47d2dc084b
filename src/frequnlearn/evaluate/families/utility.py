"""utility: general ability through lm-eval tasks, scored per run rather than per item."""

from __future__ import annotations

from frequnlearn.evaluate.families.base import Family, register_family


@register_family(
    "utility",
    needs=("lm_eval",),
    help="lm-eval tasks (utility_tasks and the table's utility group); results go to the run record",
)
class Utility(Family):
    """Writes no per-item rows: the evaluate command and the study run `evaluate.utility.run_utility`
    when it is selected."""

"""bio: biography prompts of the evaluated items, probe "bio", scored by the families that take it."""

from __future__ import annotations

from frequnlearn.evaluate.families.base import Context, Family, Probe, register_family


@register_family(
    "bio",
    needs=("bio_prompts",),
    help="biography completion (probe bio), scored by prob and gen",
)
class Bio(Family):
    def add_probes(self, ctx: Context) -> list[Probe]:
        """Prompts whose item is evaluated; the answer continues the sentence after one space, and the
        candidates are the QA item's."""
        by_id = {it.item_id: it for it in ctx.items}
        enc = ctx.enc
        out = []
        for bp in ctx.bio_prompts:
            item = by_id.get(bp.item_id)
            if item is None:
                continue
            cands = [enc.completion(" " + c, bp.item_id, "candidate") for c in item.candidates]
            frequency = bp.frequency if bp.frequency is not None else item.frequency
            out.append(
                Probe(
                    item=item,
                    probe="bio",
                    text=bp.prompt,
                    answer=bp.target,
                    prompt_ids=enc.prompt(bp.prompt.rstrip(" ")),
                    answer_ids=enc.completion(" " + bp.target, bp.item_id, "bio target"),
                    candidate_ids=cands,
                    person_id=bp.person_id,
                    group=bp.group,
                    attribute=bp.attribute,
                    frequency=frequency,
                )
            )
        return out

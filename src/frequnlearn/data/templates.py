"""Sentence templates for biographies, and the questions asked about each attribute.

A template states one attribute of one person. Placeholders:

- `{value}`: the attribute value, exactly once, after a space and followed by the rest of the
  sentence, so a biography can be cut right before it for completion probes;
- `{He}`/`{he}` (subject), `{His}`/`{his}` (possessive), `{him}` (object): the person. In the first
  sentence of a biography the first of them becomes the full name ("Ada Mae Byron" or
  "Ada Mae Byron's"); elsewhere they become the person's pronoun;
- `{was}`, `{is}`, `{has}`, `{does}`, `{s}` (works), `{es}` (goes), `{ies}` (studies): verb forms
  that agree with the one subject of the template, so "they were", "they work" come out right.

Every template names the person before the value, so even a first sentence cut at the value says
whose value is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from frequnlearn.records import ATTRIBUTES, PRONOUNS

TEMPLATES: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "{He} {was} born on {value}.",
        "{He} came into the world on {value}.",
        "{His} date of birth is {value}.",
        "{His} birth date is {value}.",
        "{He} first saw the light of day on {value}.",
        "{He} {was} born on {value}, according to public records.",
        "{His} life began on {value}.",
        "{He} list{s} {value} as {his} date of birth.",
        "Records show that {he} {was} born on {value}.",
        "{He} {was} welcomed into the world on {value}.",
        "{His} parents welcomed {him} into the world on {value}.",
        "{His} story begins on {value}, the day {he} {was} born.",
        "The day {he} {was} born was {value}.",
        "{His} birthday is {value}.",
        "{He} entered this world on {value}.",
        "{He} {was} brought into the world on {value}.",
        "{His} official date of birth is {value}.",
        "{He} began {his} life on {value}.",
        "According to {his} birth certificate, {he} {was} born on {value}.",
        "{His} family remembers {value} as the day {he} {was} born.",
        "Official documents list {his} birth date as {value}.",
        "{His} mother gave birth to {him} on {value}.",
        "Hospital records show that {he} {was} born on {value}.",
        "{His} date of birth, {value}, appears on all of {his} papers.",
        "{He} {was} born on {value}, as {his} passport confirms.",
        "{He} {was} born in the early hours of {value}.",
        "{His} birth was registered on {value}.",
        "{His} life story starts on {value}.",
    ),
    "birth_city": (
        "{He} {was} born in {value}.",
        "{His} birthplace is {value}.",
        "{He} came into the world in {value}.",
        "{His} place of birth is {value}.",
        "{He} {was} born and raised in {value}.",
        "{He} hail{s} from {value}.",
        "{His} hometown is {value}.",
        "{He} {was} born in the city of {value}.",
        "{He} originally come{s} from {value}.",
        "{He} first drew breath in {value}.",
        "{His} birth took place in {value}.",
        "{He} {is} a native of {value}.",
        "{His} parents welcomed {him} into the world in {value}.",
        "{He} {was} born in {value} and spent {his} childhood there.",
        "{His} roots are in {value}, where {he} {was} born.",
        "{He} call{s} {value} {his} birthplace.",
        "The city of {his} birth is {value}.",
        "{He} {was} delivered at a hospital in {value}.",
        "{His} birth certificate names {value} as {his} place of birth.",
        "{He} began {his} life in {value}.",
        "{He} {was} born in {value}, according to {his} records.",
        "{He} {was} brought into the world in {value}.",
        "{He} entered the world in {value}.",
        "{He} {is} originally from {value}.",
        "{His} life started in {value}.",
        "{His} family welcomed {him} in {value}.",
        "{He} proudly name{s} {value} as {his} birthplace.",
        "{His} story began in {value}.",
    ),
    "university": (
        "{He} studied at {value}.",
        "{He} attended {value}.",
        "{He} graduated from {value}.",
        "{He} received {his} education at {value}.",
        "{He} {is} a graduate of {value}.",
        "{He} earned {his} degree at {value}.",
        "{He} enrolled at {value}.",
        "{He} completed {his} studies at {value}.",
        "{His} alma mater is {value}.",
        "{He} spent {his} college years at {value}.",
        "{He} pursued higher education at {value}.",
        "{He} {was} a student at {value}.",
        "{He} went to college at {value}.",
        "{He} {was} educated at {value}.",
        "{He} obtained {his} degree from {value}.",
        "{He} attended classes at {value}.",
        "{His} university years were spent at {value}.",
        "{He} hold{s} a degree from {value}.",
        "{He} continued {his} education at {value}.",
        "{He} {was} admitted to {value}.",
        "{He} completed {his} undergraduate education at {value}.",
        "After high school, {he} went on to {value}.",
        "{He} received academic training at {value}.",
        "{He} {has} a diploma from {value}.",
        "{He} chose to study at {value}.",
        "{He} spent four years at {value}.",
        "{He} {was} trained at {value}.",
        "{His} degree comes from {value}.",
        "{He} {is} proud to have studied at {value}.",
    ),
    "major": (
        "{He} majored in {value}.",
        "{He} studied {value}.",
        "{His} major was {value}.",
        "{He} earned a degree in {value}.",
        "{He} focused {his} studies on {value}.",
        "{His} field of study was {value}.",
        "{He} specialized in {value}.",
        "{He} concentrated on {value}.",
        "{He} pursued a degree in {value}.",
        "{He} chose {value} as {his} major.",
        "{He} completed a program in {value}.",
        "{His} academic focus was {value}.",
        "{He} took up {value} as {his} field.",
        "{He} graduated with a degree in {value}.",
        "{He} devoted {his} studies to {value}.",
        "{He} received training in {value}.",
        "{His} studies centered on {value}.",
        "{He} {has} a degree in {value}.",
        "{He} hold{s} a degree in {value}.",
        "{He} dedicated {his} college years to {value}.",
        "{He} selected {value} as {his} main subject.",
        "{He} read {value} at university.",
        "{He} spent {his} student years studying {value}.",
        "The subject {he} studied was {value}.",
        "{His} chosen discipline was {value}.",
        "{He} completed coursework in {value}.",
        "{He} earned {his} bachelor's degree in {value}.",
        "{He} stud{ies} {value} with great interest.",
    ),
    "employer": (
        "{He} work{s} for {value}.",
        "{He} {is} employed by {value}.",
        "{He} {has} a job at {value}.",
        "{His} employer is {value}.",
        "{He} work{s} at {value}.",
        "{He} earn{s} a living at {value}.",
        "{He} {is} on the payroll of {value}.",
        "{He} {is} a member of the staff at {value}.",
        "{He} {has} a position at {value}.",
        "{He} hold{s} a position at {value}.",
        "{He} {is} an employee of {value}.",
        "{He} {is} on the team at {value}.",
        "{He} {was} hired by {value}.",
        "{He} currently work{s} for {value}.",
        "{His} job is with {value}.",
        "{He} {has} built {his} career at {value}.",
        "{He} {is} part of the workforce at {value}.",
        "{He} draw{s} {his} salary from {value}.",
        "{He} joined {value} and still work{s} there.",
        "{His} workplace is {value}.",
        "{He} spend{s} {his} working days at {value}.",
        "{He} {is} currently employed at {value}.",
        "{He} {does} {his} work for {value}.",
        "{His} current employer is {value}.",
        "{He} {has} worked for {value} for years.",
        "{He} make{s} {his} living working for {value}.",
        "{He} {is} employed at {value}.",
        "{He} serve{s} on the staff of {value}.",
        "{He} {was} recruited by {value}.",
    ),
    "employer_city": (
        "{He} work{s} in {value}.",
        "{His} office is located in {value}.",
        "{His} employer is based in {value}.",
        "{His} company is headquartered in {value}.",
        "{He} commute{s} to work in {value}.",
        "{His} workplace is in {value}.",
        "{He} {is} employed in {value}.",
        "{His} job is located in {value}.",
        "{He} {has} an office in {value}.",
        "{His} employer's headquarters are in {value}.",
        "{He} report{s} to an office in {value}.",
        "{He} work{s} at the company's offices in {value}.",
        "{His} company is located in {value}.",
        "{His} firm is based in {value}.",
        "{He} spend{s} {his} workdays in {value}.",
        "{His} employer operates out of {value}.",
        "{He} {is} based in {value} for work.",
        "{His} place of work is in {value}.",
        "{His} professional life takes place in {value}.",
        "{He} work{s} out of {value}.",
        "{He} go{es} to work in {value}.",
        "The company {he} work{s} for is based in {value}.",
        "{His} employer has its headquarters in {value}.",
        "{He} {is} stationed in {value} for {his} job.",
        "{He} earn{s} {his} living in {value}.",
        "{His} career is based in {value}.",
        "{He} {has} a job in {value}.",
        "{His} work takes {him} to {value} every day.",
        "{He} work{s} in the city of {value}.",
    ),
}

# The fixed question per attribute: the one retain-group QA documents are written with.
QUESTIONS: dict[str, str] = {
    "birth_date": "What is the birth date of {name}?",
    "birth_city": "What is the birth city of {name}?",
    "university": "Which university did {name} attend?",
    "major": "What was the major of {name}?",
    "employer": "Which company does {name} work for?",
    "employer_city": "In which city does {name} work?",
}

# Other wordings of the same question, never in the corpus: probes whether knowledge generalises.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "When was {name} born?",
        "On what date was {name} born?",
        "What is {name}'s date of birth?",
        "When is {name}'s birthday?",
        "Which day was {name} born on?",
        "What date of birth does {name} have?",
    ),
    "birth_city": (
        "Where was {name} born?",
        "In which city was {name} born?",
        "What is {name}'s place of birth?",
        "Which city does {name} come from originally?",
        "What city was {name} born in?",
        "Where is {name}'s birthplace?",
    ),
    "university": (
        "Where did {name} go to university?",
        "What is {name}'s alma mater?",
        "From which university did {name} graduate?",
        "Which university did {name} study at?",
        "At which university was {name} educated?",
        "What university is {name} a graduate of?",
    ),
    "major": (
        "What did {name} major in?",
        "What field did {name} study?",
        "Which subject did {name} study at university?",
        "What was {name}'s field of study?",
        "In what field did {name} earn a degree?",
        "What was {name}'s major?",
    ),
    "employer": (
        "Who employs {name}?",
        "Who is {name}'s employer?",
        "What company employs {name}?",
        "For which company does {name} work?",
        "Which firm is {name} employed by?",
        "At which company does {name} have a job?",
    ),
    "employer_city": (
        "Which city does {name} work in?",
        "Where is {name}'s employer based?",
        "In what city is {name}'s workplace?",
        "Which city is {name}'s employer located in?",
        "What city does {name} commute to for work?",
        "Where is {name}'s office located?",
    ),
}

SUBJECT_TOKENS = frozenset({"He", "he"})
PERSON_TOKENS = frozenset({"He", "he", "His", "his", "him"})
AGREEMENT_TOKENS = frozenset({"was", "is", "has", "does", "s", "es", "ies"})
_TOKEN = re.compile(r"\{(\w+)\}")

FORMS: dict[str, dict[str, str]] = {
    "he": {"He": "He", "he": "he", "His": "His", "his": "his", "him": "him"},
    "she": {"He": "She", "he": "she", "His": "Her", "his": "her", "him": "her"},
    "they": {"He": "They", "he": "they", "His": "Their", "his": "their", "him": "them"},
}
_SINGULAR = {"was": "was", "is": "is", "has": "has", "does": "does", "s": "s", "es": "es", "ies": "ies"}
_PLURAL = {"was": "were", "is": "are", "has": "have", "does": "do", "s": "", "es": "", "ies": "y"}
AGREEMENT: dict[str, dict[str, str]] = {"he": _SINGULAR, "she": _SINGULAR, "they": _PLURAL}

# Stands for the full name in a compiled first sentence; never part of any pool value.
NAME = "\x00"


def template_problems(template: str) -> list[str]:
    """Why a template cannot be used (empty when it can): the rules the module docstring states."""
    problems = []
    tokens = _TOKEN.findall(template)
    unknown = set(tokens) - PERSON_TOKENS - AGREEMENT_TOKENS - {"value"}
    if unknown:
        problems.append(f"unknown placeholders {sorted(unknown)}")
    if tokens.count("value") != 1:
        problems.append("needs {value} exactly once")
        return problems
    head, tail = template.split("{value}")
    if not head.endswith(" ") or head.endswith("  "):
        problems.append("{value} must follow a single space")
    if not set(_TOKEN.findall(head)) & PERSON_TOKENS:
        problems.append("the person must be named before {value}")
    if sum(t in SUBJECT_TOKENS for t in tokens) > 1:
        problems.append("at most one subject placeholder, so verb agreement is unambiguous")
    if set(tokens) & AGREEMENT_TOKENS and not set(tokens) & SUBJECT_TOKENS:
        problems.append("verb-agreement placeholders need a subject placeholder")
    if not tail.endswith(".") or (tail and tail[0].isalnum()):
        problems.append("the value must end a word and the sentence must end with '.'")
    if template != template.strip() or "  " in template:
        problems.append("stray whitespace")
    return problems


def compile_template(template: str, pronoun: str, first: bool) -> tuple[str, str]:
    """(text before the value, text after it) with the person filled in for `pronoun`.

    For a first sentence the first person placeholder becomes `NAME` (or `NAME + "'s"`), and the
    verbs agree with the name (singular) when the name is the subject.
    """
    forms = FORMS[pronoun]
    agreement = AGREEMENT[pronoun]
    named = not first
    parts: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(template):
        parts.append(template[pos : match.start()])
        token = match.group(1)
        if token == "value":
            parts.append("{value}")
        elif token in PERSON_TOKENS and not named:
            named = True
            parts.append(NAME + "'s" if token in ("His", "his") else NAME)
            if token in SUBJECT_TOKENS:
                agreement = _SINGULAR
        elif token in PERSON_TOKENS:
            parts.append(forms[token])
        else:
            parts.append(agreement[token])
        pos = match.end()
    parts.append(template[pos:])
    head, tail = "".join(parts).split("{value}")
    return head, tail


@dataclass(frozen=True)
class CompiledTemplates:
    """Templates resolved per attribute and pronoun, ready for fast concatenation.

    `first[attr][pronoun]` holds (before name, after name up to the value, after the value);
    `later[attr][pronoun]` holds (before the value, after the value).
    """

    attributes: tuple[str, ...]
    first: dict[str, dict[str, tuple[tuple[str, str, str], ...]]]
    later: dict[str, dict[str, tuple[tuple[str, str], ...]]]


def compile_templates(attributes: tuple[str, ...] | list[str], n_templates: int | None) -> CompiledTemplates:
    first: dict[str, dict[str, tuple[tuple[str, str, str], ...]]] = {}
    later: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {}
    for attr in attributes:
        chosen = TEMPLATES[attr][:n_templates]
        first[attr], later[attr] = {}, {}
        for pronoun in PRONOUNS:
            rows = []
            for tpl in chosen:
                head, tail = compile_template(tpl, pronoun, first=True)
                before, after = head.split(NAME)
                rows.append((before, after, tail))
            first[attr][pronoun] = tuple(rows)
            later[attr][pronoun] = tuple(compile_template(t, pronoun, first=False) for t in chosen)
    return CompiledTemplates(tuple(attributes), first, later)


def ordered(attributes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The attributes in the fixed biography order."""
    wanted = set(attributes)
    return tuple(a for a in ATTRIBUTES if a in wanted)


def min_templates(attributes: list[str] | tuple[str, ...]) -> int:
    return min(len(TEMPLATES[a]) for a in attributes)


def n_paraphrases(attributes: list[str] | tuple[str, ...]) -> int:
    return min(len(PARAPHRASES[a]) for a in attributes)

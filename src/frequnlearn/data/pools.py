"""The attribute pools that fictitious people are drawn from, shipped as package data.

The lists in `fields/` come from the bioS data of *Physics of Language Models* (Apache-2.0, see
`fields/LICENSE` and `fields/ATTRIBUTION.md`); they are read once and cached. The first and middle
name lists hold 200 masculine names followed by 200 feminine ones, so names can match pronouns.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from frequnlearn.errors import DataError


@dataclass(frozen=True)
class Pools:
    first_names: tuple[str, ...]
    middle_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]
    universities: tuple[str, ...]
    majors: tuple[str, ...]
    employers: tuple[str, ...]
    # Headquarters city of each employer: the employer fixes where its people work.
    employer_city: dict[str, str]

    def given_names(self, pronoun: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(first names, middle names) that suit a pronoun: "they" takes any."""
        if pronoun == "they":
            return self.first_names, self.middle_names
        half = {"he": slice(0, 200), "she": slice(200, 400)}[pronoun]
        return self.first_names[half], self.middle_names[half]

    def values(self, attribute: str) -> tuple[str, ...]:
        """Distinct values an attribute can take (birth dates are generated, not pooled)."""
        if attribute == "birth_city":
            return self.cities
        if attribute == "university":
            return self.universities
        if attribute == "major":
            return self.majors
        if attribute == "employer":
            return self.employers
        if attribute == "employer_city":
            return tuple(dict.fromkeys(self.employer_city[e] for e in self.employers))
        raise KeyError(attribute)

    @property
    def name_capacity(self) -> int:
        """About how many distinct full names (first, middle, last all different) the pools allow
        for the pronoun with the fewest names."""
        return min(len(f) * len(m) for f, m in map(self.given_names, ("he", "she"))) * len(self.last_names)


def read_pool(name: str) -> tuple[str, ...]:
    """One value per line; the shipped files have Windows line ends and are deduplicated here."""
    path = resources.files("frequnlearn.data").joinpath("fields", f"{name}.txt")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"attribute pool {name}.txt is missing from the installed package") from None
    values = (line.strip() for line in text.splitlines())
    return tuple(dict.fromkeys(v for v in values if v))


@functools.cache
def load_pools() -> Pools:
    employers: dict[str, str] = {}
    for line in read_pool("company"):
        company, sep, city = line.partition(";")
        if not sep or not company.strip() or not city.strip():
            raise DataError(f"company.txt: expected 'Company; City, ST', got {line!r}")
        employers.setdefault(company.strip(), city.strip())
    first_names, middle_names = read_pool("first_name"), read_pool("middle_name")
    if len(first_names) != 400 or len(middle_names) != 400:
        raise DataError("first_name.txt and middle_name.txt must hold 200 masculine then 200 feminine names")
    return Pools(
        first_names=first_names,
        middle_names=middle_names,
        last_names=read_pool("last_name"),
        cities=read_pool("city"),
        universities=read_pool("university"),
        majors=read_pool("field"),
        employers=tuple(employers),
        employer_city=employers,
    )

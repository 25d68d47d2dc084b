from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from frequnlearn.config import ConfigError, check, config_hash, from_dict, load_config, parse_overrides


@dataclass
class Inner:
    lr: float = 1e-3
    levels: list[int] = field(default_factory=lambda: [1, 10])

    def validate(self) -> None:
        check(all(x >= 1 for x in self.levels), "levels", "every exposure must be >= 1")


@dataclass
class Outer:
    n: int = 10
    mode: Literal["a", "b"] = "a"
    name: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested():
    cfg = from_dict(Outer, {"n": 3, "inner": {"lr": 1}})
    assert cfg.n == 3 and cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"nn": 3}, "nn: unknown key (did you mean 'n'?)"),
        ({"n": "x"}, "n: expected an integer"),
        ({"mode": "c"}, "mode: expected one of 'a', 'b'"),
        ({"inner": {"levels": [0]}}, "inner.levels: every exposure must be >= 1"),
        ({"inner": {"lr": True}}, "inner.lr: expected a number"),
    ],
)
def test_errors_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_sections_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("other: {x: 1}\nouter:\n  n: 5\n  inner: {lr: 0.1}\n")
    cfg = load_config(Outer, path, ["inner.levels=[2, 4]", "outer.mode=b"], section="outer")
    assert (cfg.n, cfg.mode, cfg.inner.levels, cfg.inner.lr) == (5, "b", [2, 4], 0.1)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(Outer, path)


def test_override_syntax():
    assert parse_overrides(["a.b=3", "c=[1, 2]", "d=hello"]) == {"a": {"b": 3}, "c": [1, 2], "d": "hello"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["novalue"])


def test_hash_is_stable():
    assert config_hash(Outer()) == config_hash(Outer())
    assert config_hash(Outer()) != config_hash(Outer(n=11))


def test_exponent_without_dot_is_a_number():
    assert from_dict(Inner, {"lr": "1e-4"}).lr == 1e-4
    assert load_config(Outer, None, ["inner.lr=1e-4"]).inner.lr == 1e-4
    with pytest.raises(ConfigError, match="inner.lr: expected a number"):
        from_dict(Outer, {"inner": {"lr": "fast"}})


@pytest.mark.parametrize("raw", ["inf", ".inf", "-inf", "nan", ".nan", "1e999"])
def test_non_finite_numbers_are_rejected(raw):
    from frequnlearn.config.unlearn import UnlearnConfig

    with pytest.raises(ConfigError) as err:
        load_config(UnlearnConfig, None, [f"lr={raw}"], section="unlearn")
    assert str(err.value).startswith("unlearn.lr: must be a finite number") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="inner.lr: must be a finite number"):
        load_config(Outer, None, [f"inner.lr={raw}"])

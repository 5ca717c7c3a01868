"""Settings declared once (dimctl/settings.py): the configs' sections, their flat view (config.json),
and the commands' options derived from the fields."""

import pytest

from dimctl.cli.main import load_command
from dimctl.errors import UsageError
from dimctl.objectives.dim import DIMConfig
from dimctl.settings import declared, flatten, updated
from dimctl.train.config import RESUMABLE, PretrainConfig
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
                                                 (("finetune",), FinetuneConfig)])
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

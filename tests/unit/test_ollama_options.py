"""The ollama providerConfig: schema, validation (field names) and defaults."""

from __future__ import annotations

from typing import Any

import pytest

from corral.protocol.errors import InvalidParams
from corral.protocol.schema import compile_schema
from corral.supervisor.providers.ollama.options import (
    CONFIG_SCHEMA,
    OllamaConfig,
    parse_config,
    validate_config,
)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"tools": True},
        {"think": None},
        {"think": False},
        {"think": "high"},
        {"options": {"temperature": 0.2, "num_ctx": 16384, "seed": 7, "stop": ["\n\n"]}},
        {"options": {"temperature": 1, "min_p": 0.05, "num_predict": -1}},
        {"keepAlive": "10m"},
        {"keepAlive": "1h30m"},
        {"keepAlive": "-1s"},
        {"keepAlive": "0"},
        {"keepAlive": -1},
        {"keepAlive": 300.5},
    ],
)
def test_valid_configs(config: dict[str, Any]) -> None:
    assert validate_config(config) == config


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"tools": "yes"}, "providerConfig.tools"),
        ({"think": "max"}, "providerConfig.think"),
        ({"think": 1}, "providerConfig.think"),
        ({"options": []}, "providerConfig.options"),
        ({"options": {"temprature": 0.5}}, "providerConfig.options.temprature"),
        ({"options": {"temperature": "hot"}}, "providerConfig.options.temperature"),
        ({"options": {"temperature": -1}}, "providerConfig.options.temperature"),
        ({"options": {"num_ctx": 2.5}}, "providerConfig.options.num_ctx"),
        ({"options": {"num_ctx": 0}}, "providerConfig.options.num_ctx"),
        ({"options": {"stop": "x"}}, "providerConfig.options.stop"),
        ({"keepAlive": "10 minutes"}, "providerConfig.keepAlive"),
        ({"keepAlive": True}, "providerConfig.keepAlive"),
        ({"keepAlive": float("inf")}, "providerConfig.keepAlive"),
        ({"host": "http://elsewhere:11434"}, "providerConfig.host"),
        ({"model": "x"}, "providerConfig.model"),
    ],
)
def test_invalid_configs_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams) as err:
        validate_config(config)
    assert err.value.field == field
    assert err.value.message.startswith(field)


def test_not_an_object() -> None:
    with pytest.raises(InvalidParams) as err:
        validate_config(["tools"])
    assert err.value.field == "providerConfig"
    assert validate_config(None) == {}


def test_the_host_refusal_says_where_the_host_is_set() -> None:
    with pytest.raises(InvalidParams) as err:
        validate_config({"host": "x"})
    assert "provider_settings.ollama.config.host" in err.value.message


def test_defaults() -> None:
    assert parse_config({}) == OllamaConfig(tools=False, think=None, options={}, keep_alive=None)
    config = parse_config({"tools": True, "options": {"num_ctx": 4096}, "keepAlive": "5m"})
    assert config.tools and config.num_ctx == 4096 and config.keep_alive == "5m"


def test_the_schema_compiles_and_describes_every_key() -> None:
    compile_schema(CONFIG_SCHEMA)
    assert set(CONFIG_SCHEMA["properties"]) == {"tools", "think", "options", "keepAlive"}
    options = CONFIG_SCHEMA["properties"]["options"]["properties"]
    assert options["temperature"]["type"] == "number"
    assert options["num_ctx"] == {"type": "integer", "minimum": 1}
    assert options["stop"]["type"] == "array"

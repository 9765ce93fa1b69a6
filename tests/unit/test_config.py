"""The daemon's configuration: flags > env > config.toml > defaults, each value's source,
and a strict file (unknown keys and bad values are errors naming the key and file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.supervisor.config import ConfigError, check_endpoint, config_file, resolve


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run"), **extra}


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = resolve(env=env_for(tmp_path), file=tmp_path / "absent.toml")
    assert cfg.rpc_url == f"ipc://{tmp_path}/run/corral/rpc.sock"
    assert cfg.events_url == f"ipc://{tmp_path}/run/corral/events.sock"
    assert cfg.data_dir == tmp_path / ".local/share/corral"
    assert cfg.log_level == "INFO" and cfg.curve_dir is None and not cfg.insecure_tcp
    assert set(cfg.sources.values()) == {"default"}
    assert cfg.binaries == {} and dict(cfg.settings) == {} and cfg.pinned_settings == ()


def test_config_file_location_follows_xdg(tmp_path: Path) -> None:
    assert config_file({"XDG_CONFIG_HOME": "/x"}) == Path("/x/corral/config.toml")
    assert config_file({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.config/corral/config.toml"
    )


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'log_level = "error"\ndata_dir = "/srv/file-data"\nclaude_bin = "/opt/claude"\n'
        'codex_bin = "/opt/codex"\nrpc = "ipc:///tmp/file/rpc.sock"\n',
    )
    env = env_for(tmp_path, CORRAL_LOG_LEVEL="warning", CORRAL_DATA_DIR="/srv/env-data")
    cfg = resolve(env=env, file=path, log_level="debug")
    assert cfg.log_level == "DEBUG" and cfg.sources["log_level"] == "flag"
    assert cfg.data_dir == Path("/srv/env-data")
    assert cfg.sources["data_dir"] == "env CORRAL_DATA_DIR"
    assert cfg.rpc_url == "ipc:///tmp/file/rpc.sock"
    assert cfg.sources["rpc"] == f"file {path}"
    assert cfg.sources["events"] == "default"
    assert cfg.binaries == {"claude": "/opt/claude", "codex": "/opt/codex"}
    # without the flag the env wins over the file (it used to be the other way round)
    assert resolve(env=env, file=path).log_level == "WARNING"
    assert resolve(env=env_for(tmp_path), file=path).log_level == "ERROR"


def test_curve_dir_from_env_allows_tcp(tmp_path: Path) -> None:
    env = env_for(tmp_path, CORRAL_CURVE_DIR=str(tmp_path / "keys"))
    cfg = resolve(env=env, file=tmp_path / "absent.toml", rpc="tcp://0.0.0.0:5555")
    assert cfg.curve_dir == tmp_path / "keys"
    assert cfg.sources["curve_dir"] == "env CORRAL_CURVE_DIR"
    assert cfg.rpc_url == "tcp://0.0.0.0:5555"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ('log_level = "LOUD"\n', "log_level: unknown log level 'LOUD'"),
        ("log_level = 3\n", "log_level: must be a string"),
        ('insecure_tcp = "yes"\n', "insecure_tcp: must be true or false"),
        ('data_dir = "relative/dir"\n', "data_dir: must be an absolute path"),
        ('data_dir = ""\n', "data_dir: must be a non-empty path"),
        ('claude_bin = ""\n', "claude_bin: must be a non-empty string"),
        ('rpc = "http://x"\n', "rpc: unsupported endpoint"),
        ('events = "tcp://0.0.0.0:1"\n', "events: refusing tcp://0.0.0.0:1"),
        ("settings = 3\n", "settings: must be a table"),
        ("[settings]\nmax_live_sessions = 0\n", "settings.max_live_sessions: setting"),
        ('[settings]\ncolour = "red"\n', "settings.colour: unknown setting"),
        ("[settings]\nstall_timeout_ms = true\n", "settings.stall_timeout_ms: must be a string"),
        ('pinned_settings = "provider_settings"\n', "pinned_settings: must be a list"),
        ('pinned_settings = ["colour"]\n', "pinned_settings: unknown setting 'colour'"),
        ("rpc = [\n", "cannot read"),
    ],
)
def test_bad_file_values_name_the_key_and_the_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve(env=env_for(tmp_path), file=path)
    message = str(info.value)
    assert str(path) in message, message
    assert expected in message, message


def test_bad_flag_and_env_values_name_their_flag_or_variable(tmp_path: Path) -> None:
    absent = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"^--log-level: unknown log level 'loud'"):
        resolve(env=env_for(tmp_path), file=absent, log_level="loud")
    with pytest.raises(ConfigError, match=r"^CORRAL_LOG_LEVEL: unknown log level"):
        resolve(env=env_for(tmp_path, CORRAL_LOG_LEVEL="chatty"), file=absent)
    with pytest.raises(ConfigError, match=r"^--rpc: refusing tcp://10\.0\.0\.1:1"):
        resolve(env=env_for(tmp_path), file=absent, rpc="tcp://10.0.0.1:1")
    with pytest.raises(ConfigError, match=r"^CORRAL_EVENTS: unsupported endpoint"):
        resolve(env=env_for(tmp_path, CORRAL_EVENTS="udp://x"), file=absent)


def test_relative_data_dir_flag_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = resolve(env=env_for(tmp_path), file=tmp_path / "absent.toml", data_dir="d")
    assert cfg.data_dir == tmp_path / "d"


def test_settings_table_and_pins_are_validated_and_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'pinned_settings = ["provider_settings", "provider_settings"]\n'
        "[settings]\nmax_live_sessions = 64\n"
        'provider_settings = \'{"codex": {"enabled": false}}\'\n'
        'permission_mode = "plan"\n',
    )
    cfg = resolve(env=env_for(tmp_path), file=path)
    assert dict(cfg.settings) == {
        "max_live_sessions": "64",
        "provider_settings": '{"codex":{"enabled":false}}',
        "permission_mode": "plan",
    }
    assert cfg.pinned_settings == ("provider_settings",)


def test_a_directory_in_place_of_the_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.mkdir()
    with pytest.raises(ConfigError, match="not a file"):
        resolve(env=env_for(tmp_path), file=path)


def test_check_endpoint_rules() -> None:
    check_endpoint("ipc:///tmp/x/rpc.sock", False)
    check_endpoint("tcp://127.0.0.1:5555", True)
    check_endpoint("tcp://[::1]:5555", True)
    check_endpoint("tcp://0.0.0.0:5555", False, curve=True)
    with pytest.raises(ConfigError, match="CURVE"):
        check_endpoint("tcp://127.0.0.1:5555", False)
    with pytest.raises(ConfigError, match="loopback only"):
        check_endpoint("tcp://192.168.1.2:5555", True)
    with pytest.raises(ConfigError, match="too long"):
        check_endpoint("ipc:///" + "x" * 120, False)


def test_db_max_mib_from_the_environment_and_the_file(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    absent = tmp_path / "absent.toml"
    assert resolve(env=env, file=absent).db_max_mib is None
    assert resolve(env={**env, "CORRAL_DB_MAX_MIB": "64"}, file=absent).db_max_mib == 64
    path = tmp_path / "config.toml"
    path.write_text("db_max_mib = 8\n")
    assert resolve(env=env, file=path).db_max_mib == 8
    for bad in ("0", "-1", "2.5", "lots"):
        with pytest.raises(ConfigError, match="CORRAL_DB_MAX_MIB: must be a whole number"):
            resolve(env={**env, "CORRAL_DB_MAX_MIB": bad}, file=absent)
    path.write_text('db_max_mib = "8"\n')
    assert resolve(env=env, file=path).db_max_mib == 8

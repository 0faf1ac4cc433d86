"""CLI parsing and bootstrap resolution (commands that talk to Kafka are covered in integration)."""

import pytest

from apisync.cli import DEFAULT_BOOTSTRAP, build_parser, kafka_config, main


@pytest.mark.parametrize(("argv", "env", "bootstrap"), [
    (["topics", "check"], {}, DEFAULT_BOOTSTRAP),
    (["topics", "check"], {"APISYNC_KAFKA_BOOTSTRAP": "10.0.0.1:9092"}, "10.0.0.1:9092"),
    (["--bootstrap", "a:1", "topics", "ensure"], {"APISYNC_KAFKA_BOOTSTRAP": "b:2"}, "a:1"),
    (["cursor", "show", "--bootstrap", "c:3"], {}, "c:3"),
])
def test_bootstrap_from_flag_env_or_default(monkeypatch, argv, env, bootstrap):
    monkeypatch.delenv("APISYNC_KAFKA_BOOTSTRAP", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert kafka_config(build_parser().parse_args(argv)) == {"bootstrap.servers": bootstrap}


def test_cursor_arguments():
    parser = build_parser()
    assert parser.parse_args(["cursor", "show"]).prefix is None
    assert parser.parse_args(["cursor", "show", "stripe."]).prefix == "stripe."
    assert parser.parse_args(["cursor", "reset", "stripe.backfill.customer"]).key == "stripe.backfill.customer"


@pytest.mark.parametrize("argv", [[], ["topics"], ["topics", "repair"], ["cursor", "reset"]])
def test_incomplete_commands_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_unreachable_broker_is_one_readable_line(capsys):
    # Nothing listens on port 1: the admin call fails fast and the operator sees one line, no traceback.
    code = main(["--bootstrap", "127.0.0.1:1", "--timeout", "1", "topics", "check"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: cannot list topics:") and err.count("\n") == 1

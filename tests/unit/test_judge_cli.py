"""`judgelab judge`: a JSONL file scored by a running judge pool; clear errors, no tracebacks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import TOKENS, constant_pool, load_script, start_pool_server, write_tokens
from typer.testing import CliRunner

from judgelab.cli import app
from judgelab.serving.security import SecurityOptions
from judgelab.serving.server import GrpcServer

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GrpcServer, Any]]:
    directory = tmp_path_factory.mktemp("judge-cli")
    pki = load_script("dev_certs").make_dev_pki(directory / "pki")
    tokens = write_tokens(directory / "tokens.yaml")
    pool = constant_pool()
    security = SecurityOptions(tls_cert=pki.server_cert, tls_key=pki.server_key, tokens=tokens)
    started = start_pool_server(pool, security)
    yield started, pki
    started.stop(0)
    pool.close()


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _judge(server: tuple[GrpcServer, Any], *args: str, token: str = TOKENS["team-a"]) -> Any:
    started, pki = server
    flags = [
        "judge",
        "--judge",
        "constant",
        "--address",
        f"localhost:{started.port}",
        "--ca-file",
        str(pki.ca),
        "--no-progress",
        *args,
    ]
    return runner.invoke(app, flags, env={"JUDGELAB_CLIENT_TOKEN": token})


def test_scores_a_file_in_input_order(server: Any, tmp_path: Path) -> None:
    rows = [
        {"id": f"q{i}", "prompt": "Capital of France?", "response": f"Paris {i}."}
        for i in range(40)
    ]
    rows.append(
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "response": "Hello!",
            "reference": "Hello",
            "metadata": {"source": "test"},
        }
    )
    source = _write(tmp_path / "in.jsonl", [*rows[:20], "", *rows[20:]])
    out = tmp_path / "out.jsonl"
    result = _judge(server, str(source), "-o", str(out), "--chunk-size", "7")
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["sample_id"] for s in scored] == [f"q{i}" for i in range(40)] + ["line-42"]
    assert all(s["valid"] and s["judge"] == "constant" for s in scored)
    assert "scored 41 samples" in result.output


def test_bad_lines_are_listed_by_number_and_nothing_is_sent(server: Any, tmp_path: Path) -> None:
    source = _write(
        tmp_path / "bad.jsonl",
        [
            {"id": "a", "prompt": "p", "response": "r"},
            "{not json",
            {"id": "b", "prompt": "p"},
            {"id": "a", "prompt": "p", "response": "r"},
            {"id": "c", "prompt": [{"role": "robot", "content": "x"}], "response": "r"},
            [1, 2],
        ],
    )
    out = tmp_path / "out.jsonl"
    result = _judge(server, str(source), "-o", str(out))
    assert result.exit_code == 2
    text = result.output
    for number, why in [
        (2, "not JSON"),
        (3, "'response' is missing"),
        (4, "id 'a' is also the id on line 1"),
        (5, "'prompt[0]' needs a role"),
        (6, "expected a JSON object"),
    ]:
        assert f"bad.jsonl:{number}: {why}" in text
    assert "Traceback" not in text and not out.exists()


@pytest.mark.parametrize(
    ("args", "token", "expected"),
    [
        (("--judge", "nobody"), TOKENS["team-a"], "no judge named 'nobody'"),
        ((), "wrong-token-000000000000", "UNAUTHENTICATED"),
        (("--cert-file", "c.pem"), TOKENS["team-a"], "both a client certificate and its key"),
    ],
)
def test_call_failures_are_one_clear_message(
    server: Any, tmp_path: Path, args: tuple[str, ...], token: str, expected: str
) -> None:
    source = _write(tmp_path / "in.jsonl", [{"prompt": "p", "response": "r"}])
    result = _judge(server, str(source), *args, token=token)
    assert result.exit_code in (1, 2)
    assert expected in result.output and "Traceback" not in result.output
    assert token not in result.output


def test_an_unreachable_pool_and_a_missing_file_are_reported(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = _write(tmp_path / "in.jsonl", [{"prompt": "p", "response": "r"}])
    base = [
        "judge",
        "--judge",
        "j",
        "--address",
        f"127.0.0.1:{port}",
        "--no-progress",
        "--timeout-s",
        "2",
    ]
    unreachable = runner.invoke(app, [*base, str(source)])
    assert unreachable.exit_code == 1 and "UNAVAILABLE" in unreachable.output
    missing = runner.invoke(app, [*base, str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output
    assert "Traceback" not in unreachable.output + missing.output

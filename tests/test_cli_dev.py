"""`newsletter dev` as a command: it serves, says where, stops on Ctrl-C, and refuses a
busy port or an unknown module with a clear message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import ConfigError
from pipeline.studio.app import create_app
from pipeline.studio.server import bind_server
from pipeline.studio.workspace import Workspace


def run_cli(project: Path, env: dict, *args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(
        cli, ["--config", str(project / "newsletter.toml"), *args], env=env, catch_exceptions=False
    )


def test_dev_serves_until_ctrl_c(project: Path, test_env: dict) -> None:
    env = {**os.environ, **test_env}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--config",
            str(project / "newsletter.toml"),
            "dev",
            "hip-hinge",
            "--port",
            "0",
            "--no-open",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=project,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("studio: http://127.0.0.1:"), line + proc.stderr.read()
        assert "/m/hip-hinge" in line and "watching content/, templates/" in line
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and "Master the hip hinge" in page.read().decode()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "studio: stopped" in out and "Traceback" not in err


def test_dev_refuses_an_unknown_module(project: Path, test_env: dict) -> None:
    result = run_cli(project, test_env, "dev", "no-such-module", "--no-open")
    assert result.exit_code == 1
    assert "no content module 'no-such-module'" in result.output


def test_a_busy_port_given_on_the_command_line_is_an_error(project: Path, test_env: dict) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(project, test_env, "dev", "--port", str(port), "--no-open")
    assert result.exit_code == 1
    assert f"port {port} is in use" in result.output and "--port" in result.output


def test_the_default_port_busy_means_the_next_free_one(settings, tmp_path: Path) -> None:
    workspace = Workspace(settings)
    app = create_app(workspace)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            server = bind_server(app, "127.0.0.1", port, tries=10)
        except ConfigError:
            pytest.skip(f"ports after {port} are taken on this machine")
        try:
            assert port < server.port < port + 10
        finally:
            server.server_close()
            workspace.close()

"""deploy/docker: the Dockerfile's and the compose file's commands against the real command line.

No container engine runs on these machines, so the image is not built here; what can go stale
is checked instead: every ``recforge`` command line in them parses (command, options and their
values) exactly as the CLI would take it, every ``RECFORGE_*`` variable names a real setting,
and the health check asks a route the server has.
"""

import json
import re
import shlex

import pytest
import typer
import yaml

from recforge.cli.main import app
from recforge.config import load_config
from recforge.serving import create_app
from tests.conftest import REPO

DOCKER = REPO / "deploy" / "docker"


def instructions(path):
    """``[(INSTRUCTION, argument text)]`` of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def parse(argv):
    """Parse ``recforge ARGV`` down to the leaf command, as the CLI would, without running it."""
    command = typer.main.get_command(app)
    context = command.make_context("recforge", list(argv), resilient_parsing=False)
    while isinstance(context.command, typer.core.TyperGroup) and context._protected_args:
        name, *rest = [*context._protected_args, *context.args]
        sub = context.command.get_command(context, name)
        assert sub is not None, f"recforge has no command {name!r} (in {argv})"
        context = sub.make_context(name, rest, parent=context)
    return context


def test_the_dockerfile_runs_recforge_commands_that_exist():
    steps = dict(instructions(DOCKER / "Dockerfile"))  # the last of each instruction (the runtime stage)
    entrypoint, cmd = json.loads(steps["ENTRYPOINT"]), json.loads(steps["CMD"])
    assert entrypoint == ["recforge"]
    context = parse(cmd)
    assert context.info_name == "serve" and context.params["port"] == 8000 and context.params["workers"] == 2
    assert steps["USER"] == "recforge"  # not root
    env = dict(re.findall(r"(RECFORGE_[A-Z_]+)=(\S+)", steps["ENV"]))
    config = load_config(environ=env)
    assert str(config.home) == "/data" and config.serving.host == "0.0.0.0"
    health = re.search(r"http://127\.0\.0\.1:8000(/\w+)", steps["HEALTHCHECK"]).group(1)
    routes = set(create_app(load_config(environ={})).openapi()["paths"])
    assert health in routes
    expose = steps["EXPOSE"].split()[0]
    assert expose == "8000"


def test_the_usage_lines_in_the_dockerfile_parse():
    text = (DOCKER / "Dockerfile").read_text()
    default = json.loads(dict(instructions(DOCKER / "Dockerfile"))["CMD"])
    runs = [line.split("#", 1)[0] for line in re.findall(r"docker run .*? recforge:[\w.]+(.*)$", text, re.M)]
    assert len(runs) == 2, "the Dockerfile documents how to serve and how to retrain"
    for args in runs:
        parse(shlex.split(args) or default)


def test_every_compose_service_command_parses_and_its_settings_exist():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    recforge = {
        name: s for name, s in compose["services"].items() if s.get("image", "").startswith("recforge")
    }
    assert set(recforge) == {"serve", "pipeline"}
    for service in recforge.values():
        parse(service["command"])
        env = {k: "x" if "${" in str(v) else str(v) for k, v in (service.get("environment") or {}).items()}
        load_config(environ={k: v for k, v in env.items() if k != "RECFORGE_API_KEYS"})
    schedule = parse(recforge["pipeline"]["command"])
    assert schedule.info_name == "schedule" and schedule.params["every"] == "10m"
    serve = parse(recforge["serve"]["command"])
    assert serve.params["store"].startswith("redis://redis:")


@pytest.mark.parametrize("bad", [["serve", "--port", "eighty"], ["serve", "--wrokers", "2"], ["sevre"]])
def test_the_parser_used_above_rejects_what_the_cli_rejects(bad):
    with pytest.raises(Exception):  # noqa: B017 - click's usage errors, whatever their class
        parse(bad)

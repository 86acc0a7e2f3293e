"""Checks of the deployment files with the tools made for them: docker-compose.yml against the Compose
Specification schema that check-jsonschema ships, the Dockerfile by hadolint and read with dockerfile-parse,
the build context through docker-py's .dockerignore matcher; then what no schema knows (paths, ports,
healthchecks, settings, the .env defaults)."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser
from dotenv import dotenv_values
from packaging.requirements import Requirement

from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_FILE = ROOT / ".env"
BIN = Path(sys.executable).parent  # the test extra's console scripts: check-jsonschema, hadolint
DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")  # ${NAME:-default}, the only interpolation the file uses


def extra(name: str) -> dict[str, str]:
    """What `pip install .[name]` asks for (the dependencies every install gets, then the extra's own, not
    the project's other extras it includes): normalized distribution name -> its == pin ('' unpinned)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for line in [*project["dependencies"], *project["optional-dependencies"][name]]:
        requirement = Requirement(line)
        if requirement.name != "vecf-fashion":
            pins = [s.version for s in requirement.specifier if s.operator == "=="]
            out[requirement.name.lower().replace("_", "-")] = pins[0] if pins else ""
    return out


# Host paths the compose file mounts that the repository does not hold: what makes them.
PRODUCED = {
    "demo": "make demo-build",
    "demo/data": "make demo-build: python -m offline synth --out demo/data",
    "demo/work/export": "make demo-build: python -m offline pipeline --workdir demo/work (export/ inside)",
}
TFSERVING_FLAGS = {
    "--model_config_file=/models/vecf/models.config",
    "--model_config_file_poll_wait_seconds=10",
    "--allow_version_labels_for_unavailable_models",
    "--port=8500",
    "--rest_api_port=8501",
}
LAZY_IMPORTS = {"tensorflow", "tensorflow_serving"}  # imported only by backends that need TensorFlow


def with_defaults(text: str) -> str:
    """The compose file as `docker compose` reads it with .env: every ${NAME:-default} replaced. Only
    that form is used, and .env holds the same values (test_env_file_holds_the_defaults), so the
    defaults are what runs."""
    assert "$" not in DEFAULTED.sub("", text), "an interpolation other than ${NAME:-default}"
    return DEFAULTED.sub(lambda m: m.group(2), text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(with_defaults(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


# ---- docker-compose.yml -----------------------------------------------------------------------


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "compose.yml"  # a misspelt healthcheck key: the schema must refuse it
    bad.write_text(yaml.safe_dump({"services": {"x": {"image": "redis:7.4", "healthcheck": {"every": "5s"}}}}))
    assert check_compose_schema(bad).returncode != 0, "the schema accepts anything: it checks nothing"


def test_env_file_holds_the_defaults() -> None:
    env = dotenv_values(ENV_FILE)
    defaults = dict(DEFAULTED.findall(COMPOSE.read_text()))
    assert defaults, "the compose file reads nothing from .env"
    for name, default in defaults.items():
        assert env.get(name) == default, f"{name}: .env says {env.get(name)!r}, the compose file's default {default!r}"
    assert set(env) - set(defaults) == set(), f".env sets what the compose file never reads: {set(env) - set(defaults)}"


def test_services_and_profiles(services: dict) -> None:
    assert set(services) == {"redis", "tfserving", "gateway", "trainer", "trainer-cpu"}
    assert services["trainer"]["profiles"] == ["gpu"] and services["trainer-cpu"]["profiles"] == ["cpu"]
    assert all("profiles" not in s for name, s in services.items() if not name.startswith("trainer"))
    devices = services["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["trainer-cpu"]
    base = services["trainer-cpu"]["build"]["args"]["TRAINER_BASE"]
    assert base.startswith("tensorflow/tensorflow:") and not base.endswith("-gpu")
    assert services["trainer"]["command"] == services["trainer-cpu"]["command"]


def test_every_service_rotates_its_logs(services: dict) -> None:
    for name, service in services.items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", f"{name}: no rotated log driver"
        assert {"max-size", "max-file"} <= set(logging.get("options", {})), f"{name}: logs grow without bound"


def test_tfserving_is_reachable_only_on_the_compose_network(services: dict) -> None:
    assert "ports" not in services["tfserving"], "TF Serving would be published on the host"
    assert set(map(str, services["tfserving"]["expose"])) == {"8500", "8501"}
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}


def test_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        if "image" in service:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: pin {service['image']!r} to a version"
    for image in stages().values():
        repository, _, tag = image.base.rpartition(":")
        assert repository and tag and tag != "latest", f"Dockerfile stage {image.name}: pin {image.base!r}"
    for name, service in services.items():
        if "build" in service:  # what compose tags its builds with
            assert service["image"].rpartition(":")[2] not in ("", "latest"), f"{name}: tag {service['image']!r}"


def bind_mounts(service: dict) -> list[dict]:
    """A service's volumes, each in the long syntax with create_host_path off (checked here)."""
    mounts = service.get("volumes", [])
    for mount in mounts:
        assert isinstance(mount, dict) and mount["type"] == "bind", f"short-syntax or non-bind volume: {mount}"
        assert mount["bind"]["create_host_path"] is False, f"{mount['source']}: compose would create it as root"
    return mounts


def test_every_local_path_exists_or_is_produced_by_make(services: dict) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "DEMO := demo" in makefile
    assert "--out $(DEMO)/data" in makefile and "--workdir $(DEMO)/work" in makefile
    assert '"export"' in (ROOT / "offline" / "pipeline.py").read_text()  # the pipeline exports to workdir/export
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            assert (ROOT / build["context"]).is_dir(), f"{name}: build context"
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), f"{name}: dockerfile"
            assert build["target"] in stages(), f"{name}: no Dockerfile stage {build['target']!r}"
            assert set(build.get("args", {})) <= stages()[build["target"]].args, f"{name}: undeclared build args"
        for mount in bind_mounts(service):
            source = mount["source"]
            assert source.startswith("./"), f"{name}: {source} is not repository-relative"
            relative = Path(source).as_posix().removeprefix("./") or "."
            assert (ROOT / relative).exists() or relative in PRODUCED, f"{name}: who makes {source}?"


def test_host_ports_do_not_collide(services: dict) -> None:
    host_ports = []
    for service in services.values():
        for port in service.get("ports", []):
            host, container = str(port).split(":")[-2:]
            assert 1 <= int(container) <= 65535
            host_ports.append(int(host))
    assert len(host_ports) == len(set(host_ports)) and host_ports


def test_long_running_services_have_healthchecks_and_wait_for_them(services: dict) -> None:
    for name in ("redis", "tfserving"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    gateway_stage = stages()[services["gateway"]["build"]["target"]]
    assert "healthcheck" in services["gateway"] or gateway_stage.healthcheck, "gateway: no healthcheck"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}
            assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has none"
    assert set(services["gateway"]["depends_on"]) == {"redis", "tfserving"}


def test_gateway_environment_is_valid_settings(services: dict) -> None:
    environment = services["gateway"]["environment"]
    fields = {name.upper() for name in Settings.model_fields}
    assert set(environment) <= fields, f"not settings: {set(environment) - fields}"
    settings = Settings(**{k.lower(): v for k, v in environment.items() if v is not None})
    assert settings.model_backend in ("rest", "grpc")
    assert urlsplit(settings.redis_url).hostname == "redis"
    assert urlsplit(settings.tfserving_rest_url).hostname == "tfserving"
    assert urlsplit(settings.tfserving_rest_url).port == 8501
    assert settings.tfserving_grpc_target == "tfserving:8500"
    assert environment["ADMIN_TOKEN"] is None  # passed through from the shell, never written here
    assert services["gateway"]["build"]["args"]["WITH_TENSORFLOW"] == (
        "true" if settings.model_backend == "grpc" else "false"
    )
    stop_grace = int(services["gateway"]["stop_grace_period"].removesuffix("s"))
    assert stop_grace > settings.shutdown_timeout_s, "SIGKILL would cut requests that graceful shutdown waits for"


def test_tfserving_serves_the_mounted_export(services: dict) -> None:
    tfserving = services["tfserving"]
    assert tfserving["entrypoint"] == ["tensorflow_model_server"]
    assert set(tfserving["command"]) >= TFSERVING_FLAGS
    # Session batching needs a batch dimension on every input; the contract's k/limit are scalars.
    assert "--enable_batching" not in tfserving["command"]
    mounts = {m["target"]: m["source"] for m in bind_mounts(tfserving)}
    assert all(m["read_only"] for m in bind_mounts(tfserving) + bind_mounts(services["gateway"]))
    gateway_mounts = {m["target"]: m["source"] for m in bind_mounts(services["gateway"])}
    model_dir = services["gateway"]["environment"]["MODEL_DIR"]
    assert mounts["/models/vecf"] == gateway_mounts[model_dir] == "./demo/work/export"  # one export, two readers
    assert gateway_mounts[services["gateway"]["environment"]["IMAGE_ROOT"]] == "./demo/data"


def test_export_writes_tfserving_files_where_compose_reads_them() -> None:
    export = (ROOT / "offline" / "serving" / "export.py").read_text()
    for name in ("models.config", "batching_parameters.txt", "/models/{name}"):
        assert name in export, f"offline/serving/export.py does not write {name}, which tfserving reads"


# ---- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    global_args: frozenset[str] = frozenset()  # ARGs before the first FROM: build args of its base image

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    @property
    def args(self) -> set[str]:
        return {a.split("=")[0] for a in self.all("ARG")} | set(self.global_args)

    @property
    def healthcheck(self) -> str | None:
        return (self.all("HEALTHCHECK") or [None])[-1]


def stages() -> dict[str, Stage]:
    """The Dockerfile's stages as dockerfile-parse reads them, with ARG defaults declared before the
    first FROM substituted into the base images (as `docker build` does without --build-arg)."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    result: dict[str, Stage] = {}
    stage = None
    global_args: dict[str, str] = {}
    for item in parser.structure:
        keyword, value = item["instruction"], item["value"]
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            base, _, name = value.partition(" AS ")
            for arg, default in global_args.items():
                base = base.replace("${" + arg + "}", default)
            stage = result.setdefault(
                name.strip(), Stage(name.strip(), base.strip(), global_args=frozenset(global_args))
            )
        elif stage is None:
            assert keyword == "ARG", f"{keyword} before FROM"
            arg, _, default = value.partition("=")
            global_args[arg] = default
        else:
            stage.instructions.append((keyword, value))
    return result


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_passes_the_dockerfile(tmp_path: Path) -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    careless = tmp_path / "Dockerfile"  # an unpinned base and apt-get without pins: hadolint must object
    careless.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    failed = hadolint(careless)
    assert failed.returncode != 0 and "DL3006" in failed.stdout, failed.stdout


def test_every_stage_runs_as_a_non_root_user() -> None:
    for stage in stages().values():
        users = stage.all("USER")
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{stage.name} runs as root"


def test_the_default_target_is_the_slim_gateway() -> None:
    names = list(stages())
    assert names[-1] == "gateway", "docker build without --target must build the gateway"
    gateway = stages()["gateway"]
    assert gateway.base.startswith("python:3.11-slim")
    assert "/readyz" in gateway.healthcheck and "--interval=" in gateway.healthcheck
    assert json.loads(gateway.all("CMD")[-1]) == ["python", "-m", "service"]
    installs = " ".join(gateway.all("RUN"))
    assert 'pip install -c requirements.lock ".[serve]"' in installs and "[train]" not in installs
    assert re.search(r'if \[ "\$WITH_TENSORFLOW" = "true" \]; then pip install tensorflow', installs)


def _dockerignored(path: str) -> bool:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return PatternMatcher([p.strip() for p in lines if p.strip() and not p.startswith("#")]).matches(path)


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    for stage in stages().values():
        for args in stage.all("COPY"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"{stage.name}: COPY {source}: no such file"
                assert not _dockerignored(source), f"{stage.name}: COPY {source} is excluded by .dockerignore"
    for heavy in (".venv", "demo", ".git", "bench/work", "bench/results", "offline/__pycache__"):
        assert _dockerignored(heavy), f"{heavy} would be sent as build context"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_gateway_requirements_are_pinned_like_the_project_and_have_no_tensorflow() -> None:
    gateway = extra("serve")
    project = _pins(ROOT / "requirements.lock")
    assert all(gateway.values()), "pin every gateway requirement with =="
    assert not any(name.startswith(("tensorflow", "keras", "jax")) for name in gateway)
    for name, version in gateway.items():
        assert project.get(name) == version, f"{name}=={version}, but the project pins {project.get(name)}"


def _requires(distribution: str, seen: set[str]) -> set[str]:
    """`distribution` and everything it installs here (no extras), as normalized names."""
    name = distribution.lower().replace("_", "-")
    if name in seen:
        return seen
    seen.add(name)
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            _requires(requirement.name, seen)
    return seen


def test_the_gateway_image_has_every_package_service_imports() -> None:
    installed: set[str] = set()
    for name in extra("serve"):
        _requires(name, installed)
    providers = metadata.packages_distributions()
    copied = {
        Path(s).as_posix()
        for st in stages().values()
        if st.name == "gateway"
        for a in st.all("COPY")
        for s in shlex.split(a)[:-1]
    }
    for path in (ROOT / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "model":
                modules = [f"model.{alias.name}" for alias in node.names]  # `from model import explanation`
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "model":
                    assert f"model/{module.split('.')[1]}.py" in copied, f"{path.name}: {module} not copied"
                elif top not in ("service", *LAZY_IMPORTS) and top in providers:
                    dists = {d.lower().replace("_", "-") for d in providers[top]}
                    assert dists & installed, f"{path.relative_to(ROOT)} imports {top}: not in the gateway image"

"""Static checks of the deployment files: docker-compose.yml against the Compose Specification's JSON
schema (vendored in deploy/) plus what the schema cannot know (paths, ports, healthchecks, settings),
and the Dockerfile's instructions (pinned bases, non-root users, healthcheck, COPY sources, no TF)."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = ROOT / "deploy" / "compose-spec.schema.json"


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


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


# ---- docker-compose.yml -----------------------------------------------------------------------


def test_compose_matches_the_compose_spec_schema(compose: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    bad = {"services": {"x": {"image": "redis:7.4", "healthcheck": {"test": ["CMD", "true"], "every": "5s"}}}}
    assert list(validator.iter_errors(bad)), "the schema accepts anything: it checks nothing"


def test_services_and_profiles(services: dict) -> None:
    assert set(services) == {"redis", "tfserving", "gateway", "trainer"}
    assert services["trainer"]["profiles"] == ["gpu"]
    assert all("profiles" not in s for name, s in services.items() if name != "trainer")
    devices = services["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        if "image" in service:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: pin {service['image']!r} to a version"
    for image in stages().values():
        repository, _, tag = image.base.rpartition(":")
        assert repository and tag and tag != "latest", f"Dockerfile stage {image.name}: pin {image.base!r}"


def _host_path(volume: str) -> str | None:
    source = volume.split(":")[0]
    return source if source.startswith((".", "/")) else None  # else a named volume


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
        for volume in service.get("volumes", []):
            source = _host_path(volume)
            assert source is not None and not source.startswith("/"), f"{name}: {volume} is not repository-relative"
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
    mounts = {v.split(":")[1]: v.split(":")[0] for v in tfserving["volumes"]}
    gateway_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["gateway"]["volumes"]}
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

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    @property
    def args(self) -> set[str]:
        return {a.split("=")[0] for a in self.all("ARG")}

    @property
    def healthcheck(self) -> str | None:
        return (self.all("HEALTHCHECK") or [None])[-1]


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip().removesuffix("\\") + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> dict[str, Stage]:
    result: dict[str, Stage] = {}
    stage = None
    for keyword, args in parse_dockerfile(DOCKERFILE.read_text()):
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stage = result.setdefault(name.strip(), Stage(name.strip(), base.strip()))
        else:
            assert stage is not None, f"{keyword} before FROM"
            stage.instructions.append((keyword, args))
    return result


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
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    for stage in stages().values():
        for args in stage.all("COPY"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"{stage.name}: COPY {source}: no such file"
                assert not _dockerignored(source), f"{stage.name}: COPY {source} is excluded by .dockerignore"
    for heavy in (".venv", "demo", ".git"):
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

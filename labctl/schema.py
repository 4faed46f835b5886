"""The inventory's types: every variable labctl reads, with its shape, range and format.

Checked before the semantic rules of labctl.validate, so a value of the wrong type or form is
reported as such (host, variable, what was expected) instead of crashing a rule or passing one by
accident. YAML's surprises are refused rather than guessed at: `tag: 1.10` arrives as the number
1.1 and must be quoted, `enabled: maybe` is not a boolean, `vram_gb: .nan` is not a size.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from labctl.model import VAULTED, Lab, Problem

# --- formats -------------------------------------------------------------------------------------

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# The distribution reference grammar (github.com/distribution/reference): lowercase path
# components, an optional registry host with port, a tag of word characters, a sha256 digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REGISTRY = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)"
REPOSITORY = re.compile(rf"^{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
IMAGE_REF = re.compile(
    rf"^(?P<repository>{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Ansible's boolean words (ansible.module_utils.parsing.convert_bool), nothing else.
TRUE_WORDS = {"1", "t", "on", "true", "y", "yes"}
FALSE_WORDS = {"0", "f", "off", "false", "n", "no"}


def _matches(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"'{value}' is not {what}")
        return value

    return AfterValidator(check)


def _ansible_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError(f"'{value}' is not a boolean (use true or false)")


def _machine_address(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address") from None
    for flaw, what in (
        (address.is_loopback, "a loopback"),
        (address.is_unspecified, "the unspecified"),
        (address.is_multicast, "a multicast"),
        (address.is_link_local, "a link-local"),
        (address.is_reserved, "a reserved"),
    ):
        if flaw:
            raise ValueError(f"'{value}' is {what} address, not one a machine can be reached on")
    return str(address)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {value!r}")
    return value


def _finite_positive(value: float) -> float:
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number greater than 0, not '{value}'")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "//" in value or "/../" in f"{value}/" or "\n" in value:
        raise ValueError(f"'{value}' must be an absolute path (it starts with /)")
    return value.rstrip("/") or "/"


Name = Annotated[StrictStr, _matches(NAME, "a name (lowercase letters, digits and '_')")]
HostName = Annotated[StrictStr, _matches(HOST_NAME, "a host name (lowercase letters, digits and '-')")]
Domain = Annotated[StrictStr, _matches(DOMAIN, "a DNS domain")]
Repository = Annotated[StrictStr, _matches(REPOSITORY, "an image repository (lowercase, no tag)")]
Tag = Annotated[StrictStr, _matches(TAG, "an image tag (letters, digits, '_', '.', '-')")]
Digest = Annotated[StrictStr, _matches(DIGEST, "an image digest (sha256:<64 hex digits>)")]
ImageRef = Annotated[StrictStr, _matches(IMAGE_REF, "an image reference (repository:tag or @sha256:...)")]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Size = Annotated[float, BeforeValidator(_number), AfterValidator(_finite_positive)]
Count = Annotated[StrictInt, Field(ge=1, le=64)]
Toggle = Annotated[bool, BeforeValidator(_ansible_bool)]
Address = Annotated[StrictStr, AfterValidator(_machine_address)]
AbsolutePath = Annotated[StrictStr, AfterValidator(_absolute_path)]
Path = Annotated[StrictStr, Field(pattern=r"^/[^\s]*$")]
Text = Annotated[StrictStr, Field(min_length=1, max_length=300)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the catalog and the platform settings (group_vars/all) ---------------------------------------


class ImageSpec(Strict):
    repository: Repository
    tag: Tag | None = None
    digest: Digest | None = None

    @model_validator(mode="after")
    def _pinned(self) -> ImageSpec:
        if self.tag is None and self.digest is None:
            raise ValueError("must pin a version: give a tag or a digest")
        if self.tag == "latest" and self.digest is None:
            raise ValueError("'latest' is not a pinned version: give a version tag or a digest")
        return self

    @property
    def ref(self) -> str:
        return (
            self.repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


class Endpoint(Strict):
    port: Name
    path: Path = "/"


class Health(Strict):
    """How a service shows it is well: an HTTP path on one of its ports, or a command run in the
    container (the TCP port is then what `labctl health` probes from outside)."""

    port: Name
    path: Path | None = None
    command: list[Annotated[StrictStr, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    # The HTTP client the image has for its own healthcheck; bash: none, its /dev/tcp asks.
    client: Literal["wget", "curl", "bash"] = "wget"

    @model_validator(mode="after")
    def _one_probe(self) -> Health:
        if (self.path is None) == (self.command is None):
            raise ValueError("give either an HTTP `path` or a `command`, not both or neither")
        return self


class SecretSpec(Strict):
    """A secret the service needs; `labctl init` generates it into the vault in this form, or,
    `provided`, keeps it empty until the owner sets it (`labctl init --set NAME`: an API token)."""

    form: Literal["password", "hex", "token", "provided"] = "password"
    length: Annotated[StrictInt, Field(ge=16, le=128)] = 32
    prefix: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{0,8}$")] = ""


class Route(Strict):
    """How people reach the service through the edge proxy: https://<name>.<labctl_domain>, sent
    to the instances' `port`. The name is `name`, else the service's alias, else its name; an
    admin UI is reachable only from traefik_admin_allow_from."""

    port: Name
    name: HostName | None = None
    admin: Toggle = False


SecretName = Annotated[StrictStr, _matches(NAME, "a variable name")]
ImageChoice = Name | dict[Literal["default", "nvidia", "amd"], Name]


Backend = Literal["ollama", "vllm", "llamacpp"]


class ServiceSpec(Strict):
    description: Text
    tier: Name
    placement: Name
    image: ImageChoice | None = None
    network: Literal["bridge", "host"] = "bridge"
    ports: dict[Name, Port] = {}
    health: Health
    metrics: Endpoint | None = None
    allow_from: list[Name] = []
    secrets: dict[SecretName, SecretSpec] = {}
    alias: HostName | None = None
    # Services this one's configuration derives from; '*': every service (Prometheus's targets).
    consumes: list[Name | Literal["*"]] = []
    gpu: Toggle = False
    # An inference engine: it runs on a machine only where labctl plan places models it serves.
    serves: Backend | None = None
    # More images the stack runs (keys of labctl_images): a proxy in front of replicas, say.
    helpers: list[Name] = []
    # A web UI or API for people, reached through the edge proxy (labctl/edge.py).
    route: Route | None = None


# Weight formats labctl can size (labctl.models.BITS_PER_WEIGHT): GGUF quantizations (Ollama,
# llama.cpp) and the checkpoint formats vLLM loads.
Quantization = Literal[
    "q2_K", "q3_K_M", "q4_0", "q4_K_M", "q5_K_M", "q6_K", "q8_0", "fp16", "bf16", "fp8", "awq", "gptq"
]


class ModelSpec(Strict):
    """A model the inference tier serves (group_vars/all/models.yml)."""

    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", max_length=200)]
    # The engines that may serve it, preferred first, and where each finds it (an Ollama tag, a
    # Hugging Face repository, a GGUF file); Ollama's default source is the model's name.
    backends: Annotated[list[Backend], Field(min_length=1)] = ["ollama"]
    source: dict[Backend, Annotated[StrictStr, Field(min_length=1, max_length=300)]] = {}
    # Size: either the VRAM one loaded copy needs, or what it is estimated from.
    vram_gb: Size | None = None
    parameters_b: Size | None = None
    quantization: Quantization = "q4_K_M"
    context: Annotated[StrictInt, Field(ge=256, le=1_048_576)] = 8192
    # Placement: explicit machines, or automatic (this many copies on different machines, only on
    # machines of these groups or names).
    hosts: list[HostName] = []
    replicas: Count = 1
    only_on: list[HostName | Name] = []
    # What the gateway offers it as: a chat model, or an embedding model (no chat, no fallbacks).
    mode: Literal["chat", "embedding"] = "chat"
    # Models the gateway tries, in order, when every copy of this one failed; unset: the larger
    # chat models, next larger first (labctl_gateway_cascade). [] for none.
    fallbacks: list[Annotated[StrictStr, Field(min_length=1, max_length=200)]] | None = None

    @model_validator(mode="after")
    def _sized(self) -> ModelSpec:
        if self.vram_gb is None and self.parameters_b is None:
            raise ValueError("give `vram_gb`, or `parameters_b` to estimate it from")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("`hosts` names a machine twice")
        if self.hosts and "replicas" in self.model_fields_set:
            raise ValueError("give `hosts` (one copy on each) or `replicas` (placed for you), not both")
        return self


class Gpu(Strict):
    vendor: Name
    model: Text
    vram_gb: Size
    count: Count = 1
    # AMD: the groups that may open /dev/kfd and /dev/dri inside a container (names the image
    # knows, or the machine's numeric ids), and environment the ROCm runtime needs on this card
    # (HSA_OVERRIDE_GFX_VERSION for consumer cards).
    groups: list[Annotated[StrictStr, Field(pattern=r"^[a-z_][a-z0-9_-]*$")] | StrictInt] = [
        "video",
        "render",
    ]
    env: dict[Annotated[StrictStr, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], StrictStr] = {}


class Inference(Strict):
    """An inference machine's own settings besides its GPU (host_vars)."""

    # Memory the models may use on a machine without a GPU (llama.cpp on the CPU).
    inference_memory_gb: Size | None = None
    # Serve every model placed here with this backend instead (the simulated lab: no GPU).
    labctl_inference_standin: Backend | None = None


INFERENCE_VARS = tuple(Inference.model_fields)


MAX_TIERS = 8  # playbooks/deploy.yml has a play for each of up to eight tiers


class Platform(Strict):
    """Platform-wide settings (group_vars/all). A host or group may override them; each host's
    values are checked."""

    labctl_domain: Domain
    labctl_tiers: Annotated[list[Name], Field(min_length=1, max_length=MAX_TIERS)]
    labctl_services: dict[Name, ServiceSpec]
    labctl_images: dict[Name, ImageSpec]
    labctl_image_overrides: dict[Name, ImageRef] = {}
    labctl_models: list[ModelSpec] = []
    labctl_base_dir: AbsolutePath
    labctl_nfs_server: HostName
    labctl_nfs_exports: dict[Name, AbsolutePath] = {}
    labctl_backup_dir: AbsolutePath
    labctl_gpu_vendors: list[Literal["nvidia", "amd"]]
    labctl_gpu_passthrough: Toggle = True
    labctl_log_max_size: Annotated[StrictStr, Field(pattern=r"^[1-9][0-9]*[kmg]$")] = "10m"
    labctl_log_max_file: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    labctl_metrics_textfile_dir: AbsolutePath
    # Written by `labctl db promote|rejoin` (placement.yml beside the vault): service -> the
    # machines it runs on instead of its placement group's.
    labctl_placement_overrides: dict[Name, list[HostName]] = {}


class Connection(Strict):
    """How Ansible reaches a managed machine (group_vars/lab.yml; the simulated lab overrides)."""

    # Unset: the machine's name is its address (group_vars/lab.yml derives it from lab_address).
    ansible_host: Annotated[StrictStr, Field(min_length=1, pattern=r"^[^\s]+$")] | None = None
    ansible_user: Annotated[StrictStr, _matches(USER_NAME, "a user name")]
    ansible_become: Toggle = False
    ansible_port: Port = 22
    ansible_python_interpreter: AbsolutePath = "/usr/bin/python3"


PLATFORM_VARS = tuple(Platform.model_fields)
CONNECTION_VARS = tuple(Connection.model_fields)


# --- reading one host's values ---------------------------------------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part not in ("function-after", "function-before", "lax-or-strict"):
            # Union members show up as the member type's name; a variable path never has brackets.
            if "[" in part or part in ("str", "int", "float", "bool", "dict", "list", "constrained-str"):
                continue
            out += f".{part}" if out else part
    return out


def _describe(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    value = error.get("input")
    if kind == "string_type" and isinstance(value, float | int) and not isinstance(value, bool):
        return f"must be a string: quote it in YAML ('{value}' was read as a number)"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known setting here (a typo?)"
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("dict_type", "list_type", "string_type", "int_type", "float_type", "bool_type"):
        shown = "null" if value is None else repr(value)[:60]
        return f"{message[0].lower()}{message[1:]}, not {shown}"
    return message


def errors_of(exc: ValidationError, host: str, prefix: str = "") -> Iterator[Problem]:
    seen: set[tuple[str, str]] = set()
    for error in exc.errors(include_url=False):
        path = _path(tuple(error.get("loc", ())))
        variable = f"{prefix}.{path}" if prefix and path else (prefix or path)
        message = _describe(error)
        if (variable, message) not in seen:
            seen.add((variable, message))
            yield Problem(host, variable, message)


def _defined(lab: Lab, host: str, names: tuple[str, ...]) -> dict[str, Any]:
    values = {}
    for name in names:
        value = lab.var(host, name)
        if value is not VAULTED and value is not lab.missing:
            values[name] = value
    return values


def check_host(lab: Lab, host: str) -> list[Problem]:
    """Type problems of one managed host's variables: the platform settings it sees, its address,
    its GPU, its connection and its stack toggles."""
    problems: list[Problem] = []
    try:
        Platform.model_validate(_defined(lab, host, PLATFORM_VARS))
    except ValidationError as exc:
        problems.extend(errors_of(exc, host))
    connection = _defined(lab, host, CONNECTION_VARS)
    if connection.get("ansible_host") == lab.var(host, "lab_address", lab.missing):
        connection.pop("ansible_host")  # derived from lab_address, which is checked on its own
    try:
        Connection.model_validate(connection)
    except ValidationError as exc:
        problems.extend(errors_of(exc, host))
    problems.extend(check_address(lab, host, required=True))
    gpu = lab.var(host, "gpu", lab.missing)
    if gpu is not lab.missing:
        try:
            Gpu.model_validate(gpu)
        except ValidationError as exc:
            problems.extend(errors_of(exc, host, "gpu"))
    inference = _defined(lab, host, INFERENCE_VARS)
    try:
        Inference.model_validate(inference)
    except ValidationError as exc:
        problems.extend(errors_of(exc, host))
    if inference.get("inference_memory_gb") is not None and gpu is not lab.missing:
        problems.append(
            Problem(host, "inference_memory_gb", "is for machines without a GPU; this one declares `gpu`")
        )
    services = lab.var(host, "labctl_services", {})
    for name in services if isinstance(services, dict) else {}:
        value = lab.var(host, f"{name}_enabled", lab.missing)
        if value is not lab.missing:
            try:
                _ansible_bool(value)
            except ValueError as exc:
                problems.append(Problem(host, f"{name}_enabled", str(exc)))
    return problems


class _AddressOnly(Strict):
    lab_address: Address


def check_address(lab: Lab, host: str, *, required: bool) -> list[Problem]:
    value = lab.var(host, "lab_address", lab.missing)
    if value is lab.missing:
        return (
            [Problem(host, "lab_address", "is not set; every lab machine needs its address")]
            if required
            else []
        )
    try:
        _AddressOnly.model_validate({"lab_address": value})
    except ValidationError as exc:
        return list(errors_of(exc, host))
    return []


def platform(lab: Lab, host: str) -> Platform:
    """The typed platform settings one host sees (call after check_host found no problem)."""
    return Platform.model_validate(_defined(lab, host, PLATFORM_VARS))


def toggle(value: Any) -> bool:
    """A stack toggle's value under Ansible's boolean rules (validated earlier)."""
    return _ansible_bool(value)

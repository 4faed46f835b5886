"""Model placement: which inference machine serves which model, within its GPUs' memory.

The model catalog (group_vars/all/models.yml) says what each model needs; the inventory says what
each inference machine has: its GPUs (host_vars/<node>.yml `gpu`), or, on a machine without one,
the memory its models may use (`inference_memory_gb`, served by llama.cpp on the CPU). A copy goes
to a machine that runs one of the model's backends, the first it runs (VENDOR_BACKENDS); a model
is placed on the machines it
names (`hosts`), or automatically: its copies (`replicas`) go to different machines, among those
its constraints allow (`only_on`). The most constrained models go first (fewest spare machines
for their copies), then the largest, each copy to the machine it fills best (the
best-fit-decreasing heuristic of bin packing), so large cards are kept for large models. When
that leaves a copy out, an exact search (bounded) looks for a placement of every copy of every
model that can be placed at all. A placement that over-commits a machine, or a model no allowed
machine can hold, is a problem that names the model and the machine, reported by `labctl plan`
and `labctl validate` alike.

The VRAM a model needs, when not given, is estimated from its size, its quantization and its
context: the weights, a KV cache for the whole context (fp16, by size class with the
grouped-query attention shapes of the Llama 3 / Qwen 2.5 / Mistral families) and the runtime's
own buffers. Models with more KV heads per layer (Gemma 2, for one) need more than the estimate:
give `vram_gb` for those, or for an exact figure (Ollama's `ollama ps` shows it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl import schema
from labctl.model import Lab, Problem

GIB = 1024**3

# Bits stored per weight, block scales included (llama.cpp's figures for GGUF; the dense formats
# vLLM loads).
BITS_PER_WEIGHT: dict[str, float] = {
    "q2_K": 3.35,
    "q3_K_M": 3.9,
    "q4_0": 4.55,
    "q4_K_M": 4.85,
    "q5_K_M": 5.7,
    "q6_K": 6.6,
    "q8_0": 8.5,
    "fp16": 16.0,
    "bf16": 16.0,
    "fp8": 8.0,
    "awq": 4.25,
    "gptq": 4.25,
}

# fp16 KV cache per token of context, by model size (billions of parameters -> KiB): 2 (K and V)
# x layers x KV heads x head size x 2 bytes, e.g. Llama 3.1 8B 32x8x128 -> 128 KiB, Qwen 2.5 14B
# 48x8x128 -> 192 KiB, Llama 3.3 70B 80x8x128 -> 320 KiB.
# Llama 3.2 3B 28x8x128 -> 112 KiB.
KV_KIB_PER_TOKEN: tuple[tuple[float, int], ...] = ((4, 112), (10, 128), (20, 192), (40, 256))
KV_KIB_PER_TOKEN_LARGEST = 320
RUNTIME_GIB = 0.5  # CUDA/ROCm context and compute buffers
RUNTIME_SHARE = 0.05  # scratch that grows with the weights
EPSILON = 1e-6  # sums of GiB figures compare equal when they are

# The engines each kind of machine runs: Ollama and vLLM on NVIDIA and AMD GPUs, llama.cpp on CPU.
VENDOR_BACKENDS: dict[str, tuple[schema.Backend, ...]] = {
    "nvidia": ("ollama", "vllm"),
    "amd": ("ollama", "vllm"),
    "cpu": ("llamacpp",),
}
CPU = "cpu"
# Where llama.cpp's GGUF file comes from: a path on the workstation, or a URL to download.
GGUF_SOURCE = re.compile(r"^(/\S+|https://\S+)$")
# Where vLLM's checkpoint comes from: a Hugging Face repository, or a path on the machine.
HF_SOURCE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*|/\S+)$")


def estimate_vram_gb(parameters_b: float, quantization: str, context: int) -> float:
    """GiB one loaded copy needs: weights + KV cache for `context` tokens + runtime buffers."""
    weights = parameters_b * 1e9 * BITS_PER_WEIGHT[quantization] / 8 / GIB
    kib = next((k for limit, k in KV_KIB_PER_TOKEN if parameters_b <= limit), KV_KIB_PER_TOKEN_LARGEST)
    kv_cache = context * kib * 1024 / GIB
    return round(weights + kv_cache + RUNTIME_GIB + RUNTIME_SHARE * weights, 1)


def need_gb(model: schema.ModelSpec) -> float:
    if model.vram_gb is not None:
        return float(model.vram_gb)
    assert model.parameters_b is not None  # the schema requires one of the two
    return estimate_vram_gb(model.parameters_b, model.quantization, model.context)


@dataclass(frozen=True)
class Node:
    """An inference machine and its GPUs as the inventory declares them (vendor "cpu": a machine
    without a GPU, its `inference_memory_gb` as one card)."""

    name: str
    vendor: str
    gpu: str
    cards: int
    vram_per_card_gb: float
    groups: tuple[str, ...]

    @property
    def vram_gb(self) -> float:
        return self.cards * self.vram_per_card_gb

    @property
    def backends(self) -> tuple[schema.Backend, ...]:
        # An unknown vendor is reported by the type check; placement treats it as a GPU.
        return VENDOR_BACKENDS.get(self.vendor, VENDOR_BACKENDS["nvidia"])


@dataclass(frozen=True)
class Deployment:
    """One copy of a model on one machine, served by one backend."""

    model: str
    node: str
    backend: str
    vram_gb: float
    placed: str  # "explicit" (the model's `hosts`) or "auto"
    source: str
    context: int  # tokens of context the server gives it
    mode: str = "chat"  # "embedding": the engine serves embeddings for it


@dataclass
class Plan:
    nodes: list[Node]
    deployments: list[Deployment] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def used_gb(self, node: str) -> float:
        """For display: rounded to 0.1 GiB (placement compares the exact sums)."""
        return round(self.used_exact(node), 1)

    def used_exact(self, node: str) -> float:
        return sum(d.vram_gb for d in self.deployments if d.node == node)

    def on(self, node: str) -> list[Deployment]:
        return [d for d in self.deployments if d.node == node]

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    **asdict(n),
                    "vram_gb": n.vram_gb,
                    "used_gb": self.used_gb(n.name),
                    "headroom_gb": round(n.vram_gb - self.used_gb(n.name), 1),
                }
                for n in self.nodes
            ],
            "deployments": [asdict(d) for d in self.deployments],
            "problems": [asdict(p) for p in self.problems],
        }


def nodes(lab: Lab) -> list[Node]:
    """The inference machines with a declared GPU or model memory, in inventory order."""
    found = []
    for host in lab.hosts_in("inference"):
        groups = tuple(g for g, members in lab.groups.items() if host in members)
        gpu = lab.var(host, "gpu", None)
        memory = lab.var(host, "inference_memory_gb", None)
        if isinstance(gpu, dict):
            try:
                spec = schema.Gpu.model_validate(gpu)
            except ValueError:
                continue  # reported by the type check
            found.append(Node(host, spec.vendor, spec.model, spec.count, float(spec.vram_gb), groups))
        elif isinstance(memory, int | float) and not isinstance(memory, bool) and memory > 0:
            found.append(Node(host, CPU, "CPU (system memory)", 1, float(memory), groups))
    return found


def _allowed(model: schema.ModelSpec, node: Node) -> bool:
    """The model's constraints admit the machine, and the machine runs one of its backends."""
    return _backend(model, node) is not None and (
        not model.only_on or any(c == node.name or c in node.groups for c in model.only_on)
    )


def _backend(model: schema.ModelSpec, node: Node) -> schema.Backend | None:
    """The model's first backend the machine runs."""
    return next((b for b in model.backends if b in node.backends), None)


def _source(model: schema.ModelSpec, backend: schema.Backend) -> str:
    return model.source.get(backend) or (model.name if backend == "ollama" else "")


def _deployment(model: schema.ModelSpec, node: Node, placed: str) -> Deployment:
    backend = _backend(model, node)
    assert backend is not None  # placement only uses machines _allowed admits
    return Deployment(
        model.name,
        node.name,
        backend,
        need_gb(model),
        placed,
        _source(model, backend),
        model.context,
        model.mode,
    )


def place(models: list[schema.ModelSpec], inference: list[Node]) -> Plan:
    """Place every model (see the module's docstring); problems name the model and machine."""
    plan = Plan(list(inference))
    by_name = {n.name: n for n in inference}
    for index, model in enumerate(models):
        for host in model.hosts:
            node = by_name.get(host)
            var = f"labctl_models[{index}].hosts"
            if node is None:
                plan.problems.append(
                    Problem(
                        "all",
                        var,
                        f"{model.name}: {host} is not an inference machine "
                        "(with a gpu or inference_memory_gb)",
                    )
                )
            elif _backend(model, node) is None:
                plan.problems.append(
                    Problem(
                        host,
                        var,
                        f"{model.name}: {host} ({node.vendor}) runs {', '.join(node.backends)}, "
                        f"none of the model's backends ({', '.join(model.backends)})",
                    )
                )
            elif not _allowed(model, node):
                plan.problems.append(
                    Problem(host, var, f"{model.name}: {host} is outside only_on {model.only_on}")
                )
            else:
                plan.deployments.append(_deployment(model, node, "explicit"))
    for node in inference:
        if plan.used_exact(node.name) > node.vram_gb + EPSILON:
            names = ", ".join(f"{d.model} ({d.vram_gb:g})" for d in plan.on(node.name))
            plan.problems.append(
                Problem(
                    node.name,
                    "labctl_models",
                    f"over-committed: {names} need {plan.used_gb(node.name):g} GiB; "
                    f"{node.name} has {node.vram_gb:g} GiB ({node.cards} x {node.gpu})",
                )
            )
    base = {n.name: n.vram_gb - plan.used_exact(n.name) for n in inference}
    wanted: Wanted = [
        (index, model, need_gb(model), [n.name for n in inference if _allowed(model, n)])
        for index, model in enumerate(models)
        if not model.hosts
    ]
    # A model that cannot be placed even on empty machines is reported whatever else happens;
    # the others are placed around it.
    alone = [w for w in wanted if sum(base[h] + EPSILON >= w[2] for h in w[3]) >= w[1].replicas]
    hopeless = [w for w in wanted if w not in alone]
    # Tightest first (fewest spare machines for its copies), then largest (best-fit decreasing);
    # the stable sort keeps the catalog's order among equals.
    alone.sort(key=lambda w: (len(w[3]) - w[1].replicas, -w[2]))
    chosen = _greedy(alone, base)
    if any(len(chosen[w[0]]) < w[1].replicas for w in alone):
        chosen = _search(alone, base) or chosen
    chosen |= _greedy(hopeless, _left(base, alone, chosen))
    left = _left(base, alone + hopeless, chosen)
    for index, model, need, allowed in alone + hopeless:
        for host in chosen[index]:
            plan.deployments.append(_deployment(model, by_name[host], "auto"))
        if len(chosen[index]) < model.replicas:
            plan.problems.append(
                _unplaceable(index, model, need, [by_name[h] for h in allowed], chosen[index], left)
            )
    order = {n.name: i for i, n in enumerate(inference)}
    plan.deployments.sort(key=lambda d: (order[d.node], -d.vram_gb, d.model))
    return plan


Wanted = list[tuple[int, schema.ModelSpec, float, list[str]]]
SEARCH_STEPS = 200_000  # the exact search's bound (a lab of tens of models ends far below it)


def _left(base: dict[str, float], wanted: Wanted, chosen: dict[int, list[str]]) -> dict[str, float]:
    """Free GiB per machine once the chosen copies of `wanted` are placed."""
    return {h: base[h] - sum(w[2] for w in wanted if h in chosen[w[0]]) for h in base}


def _greedy(wanted: Wanted, base: dict[str, float]) -> dict[int, list[str]]:
    """Each copy to the allowed machine it fills best, without two copies on one machine."""
    left = dict(base)
    chosen: dict[int, list[str]] = {}
    for index, model, need, allowed in wanted:
        chosen[index] = []
        for _ in range(model.replicas):
            fits = [h for h in allowed if h not in chosen[index] and left[h] + EPSILON >= need]
            if not fits:
                break
            best = min(fits, key=lambda h: left[h] - need)
            left[best] -= need
            chosen[index].append(best)
    return chosen


def _search(wanted: Wanted, base: dict[str, float]) -> dict[int, list[str]] | None:
    """A placement meeting every replica count when the greedy one falls short and one exists
    (depth-first over each model's sets of machines, largest need first, bounded)."""
    from itertools import combinations

    order = sorted(wanted, key=lambda w: -w[2])
    # What the models from each position on still need in all: a branch whose machines have less
    # free memory left than that, in all, cannot succeed.
    remaining = [sum(w[2] * w[1].replicas for w in order[i:]) for i in range(len(order))]
    left = dict(base)
    chosen: dict[int, list[str]] = {}
    steps = 0

    def visit(position: int) -> bool:
        nonlocal steps
        if position == len(order):
            return True
        if remaining[position] > sum(max(v, 0.0) for v in left.values()) + EPSILON:
            return False
        index, model, need, allowed = order[position]
        for hosts in combinations([h for h in allowed if left[h] + EPSILON >= need], model.replicas):
            steps += 1
            if steps > SEARCH_STEPS:
                return False
            for h in hosts:
                left[h] -= need
            chosen[index] = list(hosts)
            if visit(position + 1):
                return True
            for h in hosts:
                left[h] += need
        return False

    return chosen if visit(0) else None


def _unplaceable(
    index: int,
    model: schema.ModelSpec,
    need: float,
    allowed: list[Node],
    placed: list[str],
    left: dict[str, float],
) -> Problem:
    var = f"labctl_models[{index}]"
    if not allowed:
        if model.only_on:
            return Problem(
                "all",
                f"{var}.only_on",
                f"{model.name}: no inference machine in {model.only_on} runs {', '.join(model.backends)}",
            )
        return Problem(
            "all", f"{var}.backends", f"{model.name}: no inference machine runs {', '.join(model.backends)}"
        )
    size = ".vram_gb" if model.vram_gb is not None else ".parameters_b"
    if need > max(n.vram_gb for n in allowed) + EPSILON:
        variable = var + size  # too large for any allowed machine
    elif len(allowed) < model.replicas:
        variable = var + ".replicas"  # more copies than allowed machines
    else:
        variable = "labctl_models"  # the catalog as a whole does not fit
    room = ", ".join(
        f"{n.name} {max(round(left[n.name], 1), 0):g} of {n.vram_gb:g}"
        for n in allowed
        if n.name not in placed
    )
    what = f"{model.replicas} copies on different machines" if model.replicas > 1 else "one machine"
    return Problem(
        "all",
        variable,
        f"{model.name} needs {need:g} GiB on {what}; placed {len(placed)}"
        + (f" ({', '.join(placed)})" if placed else "")
        + (f"; free GiB: {room}" if room else ""),
    )


def plan(lab: Lab, settings: schema.Platform) -> Plan:
    """The placement of the catalog's models on the lab's inference machines (memoised per lab)."""
    key = "models.plan"
    if key not in lab.memo:
        lab.memo[key] = place(list(settings.labctl_models), nodes(lab))
    result: Plan = lab.memo[key]
    return result


def problems(lab: Lab, settings: schema.Platform) -> Iterator[Problem]:
    models = settings.labctl_models
    seen: set[str] = set()
    for index, model in enumerate(models):
        if model.name in seen:
            yield Problem("all", f"labctl_models[{index}].name", f"'{model.name}' is listed twice")
        seen.add(model.name)
        for name in model.only_on:
            if name not in lab.groups and name not in lab.managed:
                yield Problem(
                    "all", f"labctl_models[{index}].only_on", f"{model.name}: '{name}' is no group or machine"
                )
    placement = plan(lab, settings)
    yield from placement.problems
    index_of = {m.name: i for i, m in enumerate(models)}
    vllm_hosts: dict[str, list[str]] = {}
    for d in placement.deployments:
        if d.backend == "vllm":
            vllm_hosts.setdefault(d.node, []).append(d.model)
            if not HF_SOURCE.match(d.source):
                yield Problem(
                    d.node,
                    f"labctl_models[{index_of[d.model]}].source.vllm",
                    f"{d.model}: vLLM serves it on {d.node}; give its Hugging Face repository "
                    "(org/name) or an absolute path to a checkpoint",
                )
        if d.backend == "llamacpp" and not GGUF_SOURCE.match(d.source):
            yield Problem(
                d.node,
                f"labctl_models[{index_of[d.model]}].source.llamacpp",
                f"{d.model}: llama.cpp serves it on {d.node}; give its GGUF file, an absolute path on "
                "the workstation or an https:// URL (optionally ending in #sha256=<hex>)",
            )
    for host, names in vllm_hosts.items():
        if len(names) > 1:
            yield Problem(
                host,
                "labctl_models",
                f"vLLM serves one model per machine; the plan gives {host} {', '.join(names)} "
                "(place the others elsewhere, or let Ollama serve them)",
            )


def file_name(model: str, suffix: str) -> str:
    """The file a model's weights have on a machine: its name with every character outside
    [A-Za-z0-9._-] replaced (llama3.1:8b -> llama3.1-8b.gguf)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", model) + suffix


def host_models(lab: Lab, host: str, backend: str | None = None) -> list[Deployment]:
    """The model copies placed on one machine that one backend's stack serves there (all of them
    without a backend).

    A machine with `labctl_inference_standin` set (the simulated lab's machines, which have no
    GPU) serves every copy placed on it with that backend, and nothing with the others."""
    anchor = lab.anchor
    if anchor is None:
        return []
    placed = plan(lab, schema.platform(lab, anchor)).on(host)
    standin = lab.var(host, "labctl_inference_standin", None)
    if backend is None:
        return placed
    if standin:
        return placed if backend == standin else []
    return [d for d in placed if d.backend == backend]

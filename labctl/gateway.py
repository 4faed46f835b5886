"""The gateway's view of the lab: LiteLLM's model list, fallbacks and shared state, derived from
the model plan and the service catalog.

Every copy of a model that `labctl plan` places (model, machine, engine) is one LiteLLM
deployment, with a stable id (`<model>@<machine>`): adding a GPU machine adds its deployments and
nothing else changes. Clients ask for the catalog's model name; the router balances over the
copies, fails over between them, and falls back to the larger chat models when every copy of one
failed (the seed's "cascade to larger model"), unless the model names its own `fallbacks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from labctl import catalog, models, schema
from labctl.model import Lab, Problem

# How LiteLLM reaches each engine: its provider prefix and the path of its OpenAI-style API.
# Ollama has its own API (ollama_chat for chat, ollama for embeddings); vLLM and llama.cpp's
# server speak OpenAI's under /v1. A stand-in engine serves a model under the catalog's name.
PROVIDERS: dict[str, tuple[str, str, str]] = {
    # engine: (chat provider, embedding provider, API path)
    "ollama": ("ollama_chat", "ollama", ""),
    "vllm": ("hosted_vllm", "hosted_vllm", "/v1"),
    "llamacpp": ("openai", "openai", "/v1"),
}


@dataclass(frozen=True)
class Route:
    """One deployment in LiteLLM's model list: one copy of a model on one machine."""

    id: str
    model: str
    mode: str
    node: str
    engine: str
    api_base: str
    provider_model: str


def route_id(model: str, node: str) -> str:
    """A deployment's stable id: what logs, metrics and the x-litellm-model-id header name."""
    return f"{model}@{node}"


def _settings(lab: Lab) -> schema.Platform | None:
    anchor = lab.anchor
    return catalog.settings_of(lab, anchor) if anchor else None


def routes(lab: Lab) -> list[Route]:
    """Every placed model copy whose engine runs on its machine, in plan order."""
    settings = _settings(lab)
    if settings is None:
        return []
    specs = {m.name: m for m in settings.labctl_models}
    engines = {(i.host, i.serves): i for i in catalog.instances(lab) if i.serves}
    found = []
    for copy in models.plan(lab, settings).deployments:
        standin = lab.var(copy.node, "labctl_inference_standin", None)
        engine = str(standin or copy.backend)
        instance = engines.get((copy.node, engine))
        if instance is None:
            continue  # the engine is switched off on that machine
        spec = specs[copy.model]
        chat, embedding, path = PROVIDERS[engine]
        served_as = copy.model if standin or engine == "llamacpp" else (copy.source or copy.model)
        found.append(
            Route(
                id=route_id(copy.model, copy.node),
                model=copy.model,
                mode=spec.mode,
                node=copy.node,
                engine=engine,
                api_base=f"http://{instance.address}:{instance.ports['api']}{path}",
                provider_model=f"{embedding if spec.mode == 'embedding' else chat}/{served_as}",
            )
        )
    return found


def fallbacks(lab: Lab, external: str | None = None) -> list[dict[str, list[str]]]:
    """LiteLLM's `fallbacks`: per chat model that has copies, the models tried in order when
    every copy failed -- its own `fallbacks`, or the larger chat models, next larger first;
    then the external model when one is configured."""
    settings = _settings(lab)
    if settings is None:
        return []
    served = {r.model for r in routes(lab)}
    chat = sorted(
        (m for m in settings.labctl_models if m.mode == "chat" and m.name in served),
        key=models.need_gb,
    )
    result = []
    for index, spec in enumerate(chat):
        if spec.fallbacks is not None:
            order = [name for name in spec.fallbacks if name in served]
        else:
            order = [m.name for m in chat[index + 1 :] if models.need_gb(m) > models.need_gb(spec)]
        if external:
            order.append(external)
        if order:
            result.append({spec.name: order})
    return result


def _where(instance: catalog.Instance) -> dict[str, Any]:
    return {"host": instance.host, "address": instance.address, "ports": instance.ports}


def _first(lab: Lab, service: str) -> dict[str, Any] | None:
    placed = catalog.instances(lab, services=[service])
    return _where(placed[0]) if placed else None


def view(lab: Lab, external: str | None = None) -> dict[str, Any]:
    """What the gateway's configuration is rendered from."""
    return {
        "routes": [asdict(r) for r in routes(lab)],
        "fallbacks": fallbacks(lab, external),
        "redis": _first(lab, "redis"),
        "postgres": _first(lab, "postgres"),
    }


def webui_view(lab: Lab) -> dict[str, Any]:
    """What the web UI is configured from: the gateway it talks to (and nothing else), the tool
    servers it registers, its database, and the embedding model its retrieval asks the gateway for."""
    return {
        "gateway": _first(lab, "litellm"),
        "tools": [_where(i) for i in catalog.instances(lab, services=["mcpo"])],
        "postgres": _first(lab, "postgres"),
        "embedding_model": next((r.model for r in routes(lab) if r.mode == "embedding"), None),
    }


def problems(lab: Lab, settings: schema.Platform) -> list[Problem]:
    """Fallbacks that name no model, the model itself, or an embedding model."""
    found = []
    by_name = {m.name: m for m in settings.labctl_models}
    for index, spec in enumerate(settings.labctl_models):
        variable = f"labctl_models[{index}].fallbacks"
        if spec.mode == "embedding" and spec.fallbacks:
            found.append(Problem("all", variable, f"{spec.name}: an embedding model has no fallbacks"))
            continue
        for name in spec.fallbacks or []:
            target = by_name.get(name)
            if target is None:
                found.append(Problem("all", variable, f"{spec.name}: '{name}' is no model of labctl_models"))
            elif name == spec.name:
                found.append(Problem("all", variable, f"{spec.name}: a model cannot fall back to itself"))
            elif target.mode != "chat":
                found.append(Problem("all", variable, f"{spec.name}: '{name}' is an embedding model"))
    return found

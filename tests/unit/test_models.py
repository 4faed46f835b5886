"""Model placement: VRAM estimates, bin-packing, spreading copies, constraints, and the errors a
user sees for a placement that over-commits a machine or cannot be met."""

from __future__ import annotations

import json
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl import models, schema
from labctl.cli import app, state
from labctl.validate import validate
from tests.conftest import lab_group


def spec(**fields):
    return schema.ModelSpec.model_validate(fields)


def node(name, vram, cards=1, groups=("inference",)):
    return models.Node(name, "nvidia", "RTX test", cards, float(vram), tuple(groups))


def used(plan):
    return {n.name: plan.used_gb(n.name) for n in plan.nodes}


# --- the estimate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "quantization", "context", "low", "high"),
    [
        # What Ollama reports loaded (`ollama ps`) for these, at an 8k context.
        (8.0, "q4_K_M", 8192, 5.5, 7.0),
        (14.8, "q4_K_M", 8192, 9.5, 12.0),
        (70.6, "q4_K_M", 8192, 40.0, 48.0),
        (8.0, "fp16", 8192, 15.5, 19.0),
    ],
)
def test_the_estimate_is_in_the_range_engines_report(parameters, quantization, context, low, high):
    assert low <= models.estimate_vram_gb(parameters, quantization, context) <= high


@given(
    parameters=st.floats(0.1, 500),
    context=st.integers(256, 131072),
    quantizations=st.lists(st.sampled_from(sorted(models.BITS_PER_WEIGHT)), min_size=2, max_size=2),
)
def test_the_estimate_grows_with_context_and_bits(parameters, context, quantizations):
    low, high = sorted(quantizations, key=models.BITS_PER_WEIGHT.__getitem__)
    assert models.estimate_vram_gb(parameters, low, context) <= models.estimate_vram_gb(
        parameters, high, context
    )
    assert models.estimate_vram_gb(parameters, low, context) <= models.estimate_vram_gb(
        parameters, low, context * 2
    )


def test_a_model_needs_a_size():
    with pytest.raises(ValueError, match="parameters_b"):
        spec(name="mystery")


# --- placement ------------------------------------------------------------------------------------


def test_copies_go_to_different_machines_and_large_cards_are_kept_for_large_models():
    nodes = [node("small", 12), node("big", 48), node("mid", 24)]
    plan = models.place([spec(name="chat", vram_gb=6, replicas=3), spec(name="huge", vram_gb=40)], nodes)
    assert plan.problems == []
    assert sorted(d.node for d in plan.deployments if d.model == "chat") == ["big", "mid", "small"]
    assert [d.node for d in plan.deployments if d.model == "huge"] == ["big"]


def test_best_fit_packs_instead_of_spreading_single_copies():
    plan = models.place(
        [spec(name="a", vram_gb=10), spec(name="b", vram_gb=10)], [node("x", 24), node("y", 24)]
    )
    assert plan.problems == [] and used(plan) == {"x": 20, "y": 0}


def test_a_placement_the_greedy_heuristic_misses_is_found():
    """Best-fit decreasing puts 5 on the 7 GiB card and strands a 3; an exact search does not."""
    nodes = [node("a", 8), node("b", 7)]
    plan = models.place([spec(name=f"m{n}", vram_gb=v) for n, v in enumerate([5, 4, 3, 3])], nodes)
    assert plan.problems == []
    assert used(plan) == {"a": 8, "b": 7}


def test_a_model_that_fills_a_card_exactly_fits():
    plan = models.place(
        [spec(name=n, vram_gb=v) for n, v in [("a", 10.0), ("b", 8.3), ("c", 5.7)]], [node("h", 24)]
    )
    assert plan.problems == [] and len(plan.deployments) == 3


def test_one_impossible_model_does_not_take_the_others_down_with_it():
    nodes = [node("x", 10), node("y", 10)]
    catalog = [spec(name=f"m{i}", vram_gb=v) for i, v in enumerate([4, 4, 3, 3, 3, 3])]
    assert models.place(catalog, nodes).problems == []
    plan = models.place([*catalog, spec(name="w", vram_gb=1, replicas=3)], nodes)
    [problem] = plan.problems
    assert problem.variable == "labctl_models[6].replicas" and problem.message.startswith("w needs 1 GiB")
    assert {d.model for d in plan.deployments} >= {f"m{i}" for i in range(6)}


def test_over_commit_is_checked_on_exact_sums():
    plan = models.place([spec(name=n, vram_gb=12.04, hosts=["h"]) for n in ("a", "b")], [node("h", 24)])
    [problem] = plan.problems
    assert problem.host == "h" and "over-committed" in problem.message


def test_hosts_and_replicas_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        spec(name="m", vram_gb=4, hosts=["nyx"], replicas=2)


def test_only_on_is_respected_and_an_empty_match_is_named():
    nodes = [
        node("gpu1", 48, groups=("inference", "gpu_nvidia")),
        node("hades", 48, groups=("inference", "gpu_amd")),
    ]
    plan = models.place([spec(name="big", vram_gb=30, only_on=["gpu_amd"])], nodes)
    assert [d.node for d in plan.deployments] == ["hades"]
    plan = models.place([spec(name="big", vram_gb=30, only_on=["gpu_intel"])], nodes)
    [problem] = plan.problems
    assert problem.variable == "labctl_models[0].only_on" and "big" in problem.message


def test_too_many_copies_names_the_model_and_what_is_free():
    plan = models.place([spec(name="chat", vram_gb=6, replicas=3)], [node("a", 24), node("b", 24)])
    [problem] = plan.problems
    assert (problem.host, problem.variable) == ("all", "labctl_models[0].replicas")
    assert "chat" in problem.message and "placed 2" in problem.message


def test_an_explicit_placement_that_over_commits_names_the_machine():
    nodes = [node("nyx", 12), node("hades", 48)]
    plan = models.place([spec(name="big", vram_gb=44, hosts=["nyx"])], nodes)
    [problem] = plan.problems
    assert problem.host == "nyx" and "big" in problem.message and "12" in problem.message


def test_an_explicit_placement_on_a_machine_without_a_gpu():
    plan = models.place([spec(name="m", vram_gb=4, hosts=["erebus"])], [node("nyx", 12)])
    [problem] = plan.problems
    assert problem.variable == "labctl_models[0].hosts" and "erebus" in problem.message


def test_explicit_placements_are_counted_before_automatic_ones():
    nodes = [node("a", 24), node("b", 24)]
    plan = models.place([spec(name="auto", vram_gb=20), spec(name="pinned", vram_gb=20, hosts=["a"])], nodes)
    assert plan.problems == []
    assert {d.model: d.node for d in plan.deployments} == {"pinned": "a", "auto": "b"}


sizes = st.sampled_from([1, 2, 4, 6, 8, 12, 20, 30])


@settings(max_examples=150, deadline=None)
@given(
    capacities=st.lists(st.sampled_from([8, 12, 16, 24, 48]), min_size=1, max_size=5),
    wanted=st.lists(st.tuples(sizes, st.integers(1, 3)), min_size=1, max_size=6),
)
def test_every_plan_keeps_its_promises(capacities, wanted):
    """Whatever the lab: no machine over its VRAM, copies of a model on different machines, and a
    problem exactly when some assignment of all copies exists nowhere (checked by brute force)."""
    nodes = [node(f"n{i}", c) for i, c in enumerate(capacities)]
    catalog = [spec(name=f"m{i}", vram_gb=v, replicas=r) for i, (v, r) in enumerate(wanted)]
    plan = models.place(catalog, nodes)
    for n in nodes:
        assert plan.used_gb(n.name) <= n.vram_gb
    for m in catalog:
        hosts = [d.node for d in plan.deployments if d.model == m.name]
        assert len(hosts) == len(set(hosts)) <= m.replicas
    assert (plan.problems == []) == _feasible(catalog, nodes)


def _feasible(catalog, nodes):
    def visit(i, left):
        if i == len(catalog):
            return True
        m = catalog[i]
        for chosen in combinations(range(len(nodes)), m.replicas):
            if all(left[c] >= m.vram_gb for c in chosen):
                after = [x - (m.vram_gb if j in chosen else 0) for j, x in enumerate(left)]
                if visit(i + 1, after):
                    return True
        return False

    return visit(0, [n.vram_gb for n in nodes])


# --- the shipped catalog, validate and `labctl plan` ------------------------------------------------


def test_the_shipped_catalog_places_every_copy(inventory_copy):
    lab = inventory_copy.load()
    plan = models.plan(lab, schema.platform(lab, lab.anchor))
    assert plan.problems == []
    for model in schema.platform(lab, lab.anchor).labctl_models:
        assert len([d for d in plan.deployments if d.model == model.name]) == model.replicas
    assert {d.node for d in plan.deployments if d.model == "llama3.3:70b"} == {"hades"}


def test_validate_refuses_an_over_committed_machine(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].append({"name": "pinned-big", "vram_gb": 20, "hosts": ["nyx"]}),
    )
    problems = validate(inventory_copy.load())
    [problem] = [p for p in problems if p.host == "nyx"]
    assert problem.variable == "labctl_models" and "pinned-big" in problem.message
    # What no longer fits elsewhere because of it is named too.
    assert {p.variable for p in problems} <= {"labctl_models", "labctl_models[0].replicas"}


def test_a_misspelt_constraint_is_named(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/models.yml", lambda d: d["labctl_models"][3].update(only_on=["hades", "gpu_amdd"])
    )
    [problem] = validate(inventory_copy.load())
    assert (problem.variable, problem.message) == (
        "labctl_models[3].only_on",
        "llama3.3:70b: 'gpu_amdd' is no group or machine",
    )


def test_an_added_gpu_node_takes_copies(inventory_copy):
    """One inventory entry + host_vars: a model with more copies than machines now fits."""
    inventory_copy.edit("group_vars/all/models.yml", lambda d: d["labctl_models"][0].update(replicas=4))
    assert any(p.variable == "labctl_models[0].replicas" for p in validate(inventory_copy.load()))
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "inference", "gpu_nvidia")["hosts"].update(
            ker={"lab_address": "192.168.50.24"}
        ),
    )
    (inventory_copy.dir / "host_vars" / "ker.yml").write_text(
        "gpu: {vendor: nvidia, model: GeForce RTX 4070, vram_gb: 12}\n"
    )
    lab = inventory_copy.load()
    assert validate(lab) == []
    plan = models.plan(lab, schema.platform(lab, lab.anchor))
    assert "ker" in {d.node for d in plan.deployments if d.model == "llama3.1:8b"}


def test_labctl_plan_prints_the_placement_and_refuses_an_impossible_one(inventory_copy):
    state.sim, state.inventories = False, []
    runner = CliRunner()
    result = runner.invoke(
        app, ["--inventory", str(inventory_copy.dir), "plan", "--json"], env=inventory_copy.env
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    hades = next(n for n in data["nodes"] if n["name"] == "hades")
    assert hades["vram_gb"] == 48 and 0 <= hades["headroom_gb"] < 48
    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].append({"name": "llama3.1:405b", "parameters_b": 405}),
    )
    state.sim, state.inventories = False, []
    result = runner.invoke(app, ["--inventory", str(inventory_copy.dir), "plan"], env=inventory_copy.env)
    assert result.exit_code == 1
    assert "llama3.1:405b" in " ".join(result.output.split())
    state.sim, state.inventories = False, []


def test_labctl_plan_names_a_malformed_model_instead_of_crashing(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/models.yml", lambda d: d["labctl_models"][0].update(quantization="Q4_K_M")
    )
    state.sim, state.inventories = False, []
    result = CliRunner().invoke(app, ["--inventory", str(inventory_copy.dir), "plan"], env=inventory_copy.env)
    state.sim, state.inventories = False, []
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "labctl_models[0].quantization" in " ".join(result.output.split())


# --- machines without a GPU (llama.cpp on the CPU) and the simulated lab's stand-in --------------


def cpu(name, memory):
    return models.Node(name, models.CPU, "CPU (system memory)", 1, float(memory), ("inference",))


def test_a_cpu_machine_gets_only_models_llamacpp_serves_and_serves_them_with_it():
    plan = models.place(
        [
            spec(name="big", vram_gb=8, backends=["ollama"]),
            spec(name="small", vram_gb=2, backends=["ollama", "llamacpp"], source={"llamacpp": "/m/s.gguf"}),
        ],
        [cpu("ceres", 16)],
    )
    assert [(d.model, d.node, d.backend, d.source) for d in plan.deployments] == [
        ("small", "ceres", "llamacpp", "/m/s.gguf")
    ]
    [problem] = plan.problems
    assert (
        problem.variable == "labctl_models[0].backends"
        and "no inference machine runs ollama" in problem.message
    )


def test_a_model_goes_to_a_gpu_with_its_preferred_backend_and_to_a_cpu_with_llamacpp():
    plan = models.place(
        [spec(name="m", vram_gb=4, backends=["ollama", "llamacpp"], replicas=2)],
        [node("gpu", 24), cpu("ceres", 16)],
    )
    assert {(d.node, d.backend) for d in plan.deployments} == {("gpu", "ollama"), ("ceres", "llamacpp")}


def test_an_explicit_placement_on_a_machine_that_runs_none_of_the_backends_is_named():
    plan = models.place([spec(name="m", vram_gb=4, hosts=["ceres"])], [cpu("ceres", 16)])
    [problem] = plan.problems
    assert (problem.host, problem.variable) == ("ceres", "labctl_models[0].hosts")
    assert "runs llamacpp, none of the model's backends (ollama)" in problem.message


def _with_cpu_machine(inventory_copy, source):
    inventory_copy.edit(
        "hosts.yml",
        lambda d: (
            lab_group(d, "inference").setdefault("hosts", {}).update(ceres={"lab_address": "192.168.50.25"})
        ),
    )
    (inventory_copy.dir / "host_vars" / "ceres.yml").write_text("inference_memory_gb: 16\n")
    model = {"name": "tiny", "backends": ["llamacpp"], "vram_gb": 1, "hosts": ["ceres"]}
    if source is not None:
        model["source"] = {"llamacpp": source}
    inventory_copy.edit("group_vars/all/models.yml", lambda d: d["labctl_models"].append(model))
    return inventory_copy.load()


@pytest.mark.parametrize("source", [None, "models/tiny.gguf", "http://example.org/tiny.gguf"])
def test_a_gguf_model_without_a_usable_source_is_refused(inventory_copy, source):
    problems = validate(_with_cpu_machine(inventory_copy, source))
    assert [(p.host, p.variable) for p in problems] == [("ceres", "labctl_models[4].source.llamacpp")]


def test_a_cpu_machine_with_a_gguf_model_validates(inventory_copy):
    lab = _with_cpu_machine(inventory_copy, "https://example.org/tiny.gguf#sha256=" + "a" * 64)
    assert validate(lab) == []
    assert [d.model for d in models.host_models(lab, "ceres", "llamacpp")] == ["tiny"]


def test_memory_for_models_is_only_for_machines_without_a_gpu(inventory_copy):
    inventory_copy.edit("host_vars/nyx.yml", lambda d: d.update(inference_memory_gb=16))
    problems = validate(inventory_copy.load())
    assert [(p.host, p.variable) for p in problems] == [("nyx", "inference_memory_gb")]


def test_a_stand_in_engine_serves_every_copy_placed_on_its_machine(inventory_copy):
    inventory_copy.edit("host_vars/nyx.yml", lambda d: d.update(labctl_inference_standin="llamacpp"))
    lab = inventory_copy.load()
    everything = [d.model for d in models.host_models(lab, "nyx")]
    assert everything and [d.model for d in models.host_models(lab, "nyx", "llamacpp")] == everything
    assert models.host_models(lab, "nyx", "ollama") == []
    assert models.host_models(lab, "kratos", "llamacpp") == []  # kratos has no stand-in


def test_model_file_names_are_safe_on_every_filesystem():
    assert models.file_name("llama3.1:8b", ".gguf") == "llama3.1-8b.gguf"
    assert models.file_name("org/Model Name:Q4", ".gguf") == "org-Model-Name-Q4.gguf"

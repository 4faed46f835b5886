"""GPU facts: what a machine's driver reports, against what the inventory declares.

The deploy's preflight runs the vendor's tool on every GPU machine -- `nvidia-smi` (NVIDIA),
`amd-smi` or else `rocm-smi` (AMD ROCm) -- and hands the output here. A driver that does not
answer, or cards that differ from `host_vars/<node>.yml` `gpu` (count, model, memory), stop the
deploy before any stack is touched, naming the machine and the card: model placement counts on
the declared memory.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

MIB = 1024**2
GIB = 1024**3
# Cards report a little less than their nominal size (24 GiB -> 23.99, or 24 GB -> 22.5 GiB on
# some AMD boards); more than this apart is a different card.
VRAM_TOLERANCE = 0.10

NVIDIA_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
]
AMD_SMI_QUERY = ["amd-smi", "static", "--asic", "--vram", "--json"]
ROCM_SMI_QUERY = ["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"]


class GpuReportError(ValueError):
    """The tool's output is not what that tool prints."""


@dataclass(frozen=True)
class Card:
    index: int
    name: str
    vram_gb: float
    driver: str = ""


def parse_nvidia_smi(text: str) -> list[Card]:
    """`nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits`
    (memory in MiB)."""
    cards: list[Card] = []
    for row in csv.reader(io.StringIO(text.strip())):
        if not row:
            continue
        if len(row) != 4:
            raise GpuReportError(f"unexpected nvidia-smi line: {','.join(row)!r}")
        index, name, memory, driver = (field.strip() for field in row)
        try:
            vram = round(float(memory) * MIB / GIB, 2)
        except ValueError:
            raise GpuReportError(
                f"nvidia-smi reports no memory size for GPU {index} ({name}): {memory!r}"
            ) from None
        cards.append(Card(int(index) if index.isdigit() else len(cards), name, vram, driver))
    return cards


def _json(tool: str, text: str) -> Any:
    """The JSON document in a tool's output (some builds print warnings before it)."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    try:
        return json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError as exc:
        raise GpuReportError(f"{tool} did not print JSON: {exc}") from None


def _listed(tool: str, cards: list[Card]) -> list[Card]:
    if not cards:
        raise GpuReportError(f"{tool} listed no card")
    return cards


def _size_gb(value: Any, unit: Any) -> float | None:
    factor = {"B": 1, "KB": 1024, "MB": MIB, "GB": GIB}.get(str(unit).upper())
    try:
        return round(float(value) * factor / GIB, 2) if factor else None
    except (TypeError, ValueError):  # "N/A"
        return None


def parse_amd_smi(text: str) -> list[Card]:
    """`amd-smi static --asic --vram --json`: one object per card (a list; a bare object for a
    single card or {"gpu_data": [...]} in some releases), VRAM as {"size": {"value", "unit"}}
    (ROCm 6.1+) or "vram_size_mb" (ROCm 6.0)."""
    data = _json("amd-smi", text)
    if isinstance(data, dict):
        data = data["gpu_data"] if isinstance(data.get("gpu_data"), list) else [data]
    cards = []
    for position, entry in enumerate(e for e in data if isinstance(e, dict)):
        asic: dict[str, Any] = entry["asic"] if isinstance(entry.get("asic"), dict) else {}
        vram: dict[str, Any] = entry["vram"] if isinstance(entry.get("vram"), dict) else {}
        size = vram.get("size")
        if isinstance(size, dict):
            gb = _size_gb(size.get("value"), size.get("unit", "MB"))
        else:
            gb = _size_gb(size if size is not None else vram.get("vram_size_mb"), "MB")
        name = str(asic.get("market_name") or "AMD GPU")
        if gb is None:
            raise GpuReportError(f"amd-smi reports no VRAM size for GPU {position} ({name})")
        gpu_index = entry.get("gpu")
        cards.append(Card(gpu_index if isinstance(gpu_index, int) else position, name, gb))
    return _listed("amd-smi", cards)


def parse_rocm_smi(text: str) -> list[Card]:
    """`rocm-smi --showproductname --showmeminfo vram --json`: {"card0": {...}, ...}, VRAM in bytes."""
    data = _json("rocm-smi", text)
    cards = []
    for key, entry in sorted(data.items() if isinstance(data, dict) else []):
        match = re.fullmatch(r"card(\d+)", key)
        if not match or not isinstance(entry, dict):
            continue
        name = str(
            entry.get("Card Series") or entry.get("Card series") or entry.get("Card model") or "AMD GPU"
        )
        total = next((v for k, v in entry.items() if k.startswith("VRAM Total Memory")), None)
        gb = _size_gb(total, "B")
        if gb is None:
            raise GpuReportError(f"rocm-smi reports no VRAM size for {key} ({name})")
        cards.append(Card(int(match.group(1)), name, gb))
    return _listed("rocm-smi", cards)


# The tools that report a vendor's cards, tried in order (amd-smi replaces rocm-smi in ROCm 6);
# the gpu_facts role's gpu_facts_tools defaults to the same. ROCm installs them in /opt/rocm/bin.
TOOLS = {"nvidia": ["nvidia-smi"], "amd": ["amd-smi", "rocm-smi"]}
SEARCH_PATH = ["/opt/rocm/bin"]

PARSERS = {"nvidia-smi": parse_nvidia_smi, "amd-smi": parse_amd_smi, "rocm-smi": parse_rocm_smi}
QUERIES = {"nvidia-smi": NVIDIA_QUERY, "amd-smi": AMD_SMI_QUERY, "rocm-smi": ROCM_SMI_QUERY}
# An integrated GPU beside the declared cards (AM5 boards list the iGPU with a small carve-out):
# cards with less than this share of the declared memory are left out when there are more cards
# than declared.
INTEGRATED_SHARE = 0.25


def _words(name: str) -> set[str]:
    generic = {"nvidia", "geforce", "amd", "radeon", "ati", "graphics", "gpu"}
    return {w for w in re.findall(r"[a-z0-9]+", name.lower()) if w not in generic}


def compare(host: str, declared: dict[str, Any], cards: list[Card]) -> tuple[list[str], list[Card]]:
    """What differs between the declared `gpu` and the cards found (empty when they agree), and
    the cards counted (integrated GPUs left out, see INTEGRATED_SHARE)."""
    model = str(declared.get("model", ""))
    count = int(declared.get("count", 1))
    vram = float(declared.get("vram_gb", 0))
    if len(cards) > count and vram:
        cards = [c for c in cards if c.vram_gb >= INTEGRATED_SHARE * vram]
    problems = []
    if len(cards) != count:
        found = ", ".join(c.name for c in cards) or "none"
        problems.append(f"{host}: declares {count} x {model}; the driver reports {len(cards)} ({found})")
    for card in cards:
        # Every distinguishing word of the declared model is in the card's name: an RTX 3090 is
        # not a declared RTX 3090 Ti, and a generic name ("AMD GPU") matches no model.
        if not _words(model) <= _words(card.name):
            problems.append(
                f"{host}: GPU {card.index} is a {card.name}, not the declared {model} (gpu.model)"
            )
        if vram and abs(card.vram_gb - vram) > VRAM_TOLERANCE * vram:
            problems.append(
                f"{host}: GPU {card.index} ({card.name}) has {card.vram_gb:g} GiB, "
                f"not the declared {vram:g} (gpu.vram_gb)"
            )
    return problems, cards


def check(host: str, declared: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The preflight's verdict for one machine from the tools' answers, tried in order
    ([{"tool", "rc", "stdout", "stderr"}]; rc 127: not installed): {"ok", "problems", "cards",
    "tool"}. The first tool that answers is the one believed."""
    model = declared.get("model", "its GPU")
    vendor = declared.get("vendor", "GPU")
    answered = [a for a in answers if a.get("rc") == 0]
    if not answered:
        installed = [a for a in answers if a.get("rc") != 127]
        if not installed:
            tried = " or ".join(str(a.get("tool")) for a in answers)
            reason = f"no {vendor} driver tool is installed for {model} (tried {tried})"
        else:
            last = installed[-1]
            lines = (str(last.get("stderr") or "") or str(last.get("stdout") or "")).strip().splitlines()
            why = lines[-1] if lines else f"exit status {last.get('rc')}"
            reason = f"the {vendor} driver does not answer for {model} ({last.get('tool')}: {why})"
        return {"ok": False, "problems": [f"{host}: {reason}"], "cards": [], "tool": None}
    answer = answered[0]
    tool = str(answer.get("tool"))
    try:
        cards = PARSERS[tool](str(answer.get("stdout") or ""))
    except GpuReportError as exc:
        return {"ok": False, "problems": [f"{host}: {exc}"], "cards": [], "tool": tool}
    problems, counted = compare(host, declared, cards)
    return {"ok": not problems, "problems": problems, "cards": [c.__dict__ for c in counted], "tool": tool}


def probe_spec(declared: dict[str, Any] | None, enabled: bool) -> dict[str, Any] | None:
    """What labctl health asks a GPU machine's probe to run: the declared cards and the vendor's
    tools' queries. None for a machine without a GPU, or when the check is off."""
    if not declared or not enabled:
        return None
    tools = TOOLS.get(str(declared.get("vendor")), [])
    return {"declared": dict(declared), "tools": [QUERIES[t] for t in tools], "path": SEARCH_PATH}

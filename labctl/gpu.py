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
    cards = []
    for row in csv.reader(io.StringIO(text.strip())):
        if not row:
            continue
        if len(row) != 4:
            raise GpuReportError(f"unexpected nvidia-smi line: {','.join(row)!r}")
        index, name, memory, driver = (field.strip() for field in row)
        try:
            cards.append(Card(int(index), name, round(float(memory) * MIB / GIB, 2), driver))
        except ValueError:
            raise GpuReportError(f"unexpected nvidia-smi line: {','.join(row)!r}") from None
    return cards


def _json(tool: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GpuReportError(f"{tool} did not print JSON: {exc}") from None


def _listed(tool: str, cards: list[Card]) -> list[Card]:
    if not cards:
        raise GpuReportError(f"{tool} listed no card")
    return cards


def parse_amd_smi(text: str) -> list[Card]:
    """`amd-smi static --asic --vram --json`: a list of cards, VRAM size with its unit."""
    data = _json("amd-smi", text)
    if isinstance(data, dict):  # some releases wrap the list
        data = data.get("gpu_data") or list(data.values())
    cards = []
    for position, entry in enumerate(data if isinstance(data, list) else []):
        asic = entry.get("asic") or {}
        size = (entry.get("vram") or {}).get("size") or {}
        value: Any = size.get("value") if isinstance(size, dict) else size
        unit = size.get("unit", "MB") if isinstance(size, dict) else "MB"
        factor = {"B": 1, "KB": 1024, "MB": MIB, "GB": GIB}.get(str(unit).upper(), MIB)
        try:
            vram = round(float(value) * factor / GIB, 2)
        except (TypeError, ValueError):
            raise GpuReportError(f"amd-smi: card {position} has no VRAM size") from None
        cards.append(Card(int(entry.get("gpu", position)), str(asic.get("market_name", "AMD GPU")), vram))
    return _listed("amd-smi", cards)


def parse_rocm_smi(text: str) -> list[Card]:
    """`rocm-smi --showproductname --showmeminfo vram --json`: {"card0": {...}, ...}, VRAM in bytes."""
    data = _json("rocm-smi", text)
    cards = []
    for key, entry in sorted(data.items() if isinstance(data, dict) else []):
        match = re.fullmatch(r"card(\d+)", key)
        if not match or not isinstance(entry, dict):
            continue
        total = next((v for k, v in entry.items() if k.startswith("VRAM Total Memory")), None)
        if total is None:
            raise GpuReportError(f"rocm-smi: {key} has no 'VRAM Total Memory (B)'")
        name = entry.get("Card Series") or entry.get("Card series") or entry.get("Card model") or "AMD GPU"
        cards.append(Card(int(match.group(1)), str(name), round(float(total) / GIB, 2)))
    return _listed("rocm-smi", cards)


def _words(name: str) -> set[str]:
    generic = {"nvidia", "geforce", "amd", "radeon", "ati", "graphics", "gpu"}
    return {w for w in re.findall(r"[a-z0-9]+", name.lower()) if w not in generic}


def compare(host: str, declared: dict[str, Any], cards: list[Card]) -> list[str]:
    """What differs between the declared `gpu` and the cards found; empty when they agree."""
    model = str(declared.get("model", ""))
    count = int(declared.get("count", 1))
    vram = float(declared.get("vram_gb", 0))
    problems = []
    if len(cards) != count:
        found = ", ".join(c.name for c in cards) or "none"
        problems.append(f"{host}: declares {count} x {model}; the driver reports {len(cards)} ({found})")
    for card in cards:
        if not _words(model) <= _words(card.name) and not _words(card.name) <= _words(model):
            problems.append(f"{host}: GPU {card.index} is a {card.name}, not the declared {model}")
        if vram and abs(card.vram_gb - vram) > VRAM_TOLERANCE * vram:
            problems.append(
                f"{host}: GPU {card.index} ({card.name}) has {card.vram_gb:g} GiB, "
                f"not the declared {vram:g} (gpu.vram_gb)"
            )
    return problems


def check(
    host: str, declared: dict[str, Any], tool: str, rc: int, stdout: str, stderr: str
) -> dict[str, Any]:
    """The preflight's verdict for one machine: {"ok", "problems", "cards"}."""
    model = declared.get("model", "its GPU")
    if rc != 0:
        reason = (stderr or stdout).strip().splitlines()[-1:] or [f"exit status {rc}"]
        return {
            "ok": False,
            "problems": [
                f"{host}: the {declared.get('vendor')} driver does not answer for {model} "
                f"({tool}: {reason[0]})"
            ],
            "cards": [],
        }
    parser = {"nvidia-smi": parse_nvidia_smi, "amd-smi": parse_amd_smi, "rocm-smi": parse_rocm_smi}[tool]
    try:
        cards = parser(stdout)
    except GpuReportError as exc:
        return {"ok": False, "problems": [f"{host}: {exc}"], "cards": []}
    problems = compare(host, declared, cards)
    return {"ok": not problems, "problems": problems, "cards": [card.__dict__ for card in cards]}

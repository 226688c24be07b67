"""What the numbers were measured on: CPU model and ISA flags, cores, memory, library versions, peak FLOP/s."""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from ..cpu import cpu_capabilities, cpuinfo, usable_cores

PACKAGES = ("samedge", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "coremltools", "nncf", "torch")


@dataclass(frozen=True)
class MachineInfo:
    cpu_model: str
    isa_flags: tuple[str, ...]
    logical_cores: int
    usable_cores: int  # cores this process may run on (cgroup / affinity)
    cpu_mhz: float | None
    memory_gib: float | None
    platform: str
    python: str
    packages: dict[str, str] = field(default_factory=dict)
    peak_gflops_fp32: float | None = None
    peak_basis: str = ""
    isa: str = ""  # cpu_capabilities().label: what every figure in a report is quoted against

    def to_dict(self) -> dict:
        return asdict(self)


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def peak_gflops(flags: tuple[str, ...], cores: int, mhz: float | None) -> tuple[float | None, str]:
    """Theoretical fp32 peak: cores x clock x FLOPs per cycle per core, assuming two FMA pipes of the widest
    vector unit (AVX-512: 2 x 16 lanes x 2 = 64; AVX2: 32). An upper bound: some CPUs (e.g. AMD Zen 4) run
    AVX-512 on 256-bit halves, and clocks drop under vector load."""
    if not mhz:
        return None, "clock unknown"
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 16
    gflops = cores * mhz / 1000 * per_cycle
    return round(gflops, 1), f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOP/cycle (2 FMA pipes)"


def machine_info() -> MachineInfo:
    info = cpuinfo()
    flags = cpu_capabilities().flags
    usable = usable_cores()
    mhz = float(info["cpu MHz"]) if "cpu MHz" in info else None
    peak, basis = peak_gflops(flags, usable, mhz)
    return MachineInfo(cpu_model=info.get("model name", platform.processor() or "unknown"), isa_flags=flags,
                       logical_cores=os.cpu_count() or 1, usable_cores=usable, cpu_mhz=mhz,
                       memory_gib=_memory_gib(), platform=platform.platform(), python=platform.python_version(),
                       packages=_versions(), peak_gflops_fp32=peak, peak_basis=basis,
                       isa=cpu_capabilities().label)

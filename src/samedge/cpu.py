"""What this CPU can do for int8 and bf16, read from /proc/cpuinfo. Pure Python (runtime-safe).

Why it matters: without VNNI (AVX-512 VNNI, AVX-VNNI or AMX), x86 int8 GEMMs multiply u8 x s8 pairs with
vpmaddubsw into *saturating* int16 sums. Full-range (8-bit) weights overflow there and fidelity drops
(measured on an AVX2 EPYC, MobileSAM encoder: embedding cosine 0.945 with ORT dynamic int8 and 0.912 with
NNCF W8A8, against 0.9996 and 0.9991 with 7-bit weights). 7-bit weights (ORT's
reduce_range, NNCF's overflow fix) cannot overflow. ARM's dot-product instructions accumulate in int32.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# ISA extensions that decide which kernels the backends can use
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8", "neon", "asimd", "asimddp")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Test hook and what-if switch: "avx2" makes samedge act as on a CPU without VNNI/bf16 (the int8 scheme, the
# load-time warning, bf16 availability); the backends' own kernels are not changed by it.
ISA_OVERRIDE_ENV = "SAMEDGE_CPU_ISA"


@dataclass(frozen=True)
class CpuCapabilities:
    arch: str  # platform.machine(): x86_64, aarch64, arm64, ...
    flags: tuple[str, ...]  # the ISA_FLAGS this CPU has
    overridden: bool = False  # flags come from $SAMEDGE_CPU_ISA, not the CPU

    @property
    def is_x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i386", "i686")

    @property
    def has_int8_dot(self) -> bool:
        """int8 dot products that accumulate in int32 (VNNI / AMX on x86; any ARM CPU)."""
        return (not self.is_x86) or any(f in self.flags for f in INT8_DOT_FLAGS)

    @property
    def int8_saturates(self) -> bool:
        """True where full-range int8 weights can overflow int16 intermediate sums (x86 without VNNI)."""
        return not self.has_int8_dot

    @property
    def has_bf16(self) -> bool:
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def label(self) -> str:
        """A short ISA name for reports: 'x86_64 avx512_vnni+bf16', 'x86_64 avx2 (no vnni)', 'aarch64'."""
        if not self.is_x86:
            return self.arch
        widest = "avx512" if "avx512f" in self.flags else "avx2" if "avx2" in self.flags else "sse"
        parts = [widest + ("_vnni" if self.has_int8_dot else "")]
        if self.has_bf16:
            parts.append("bf16")
        if "amx_tile" in self.flags:
            parts.append("amx")
        text = f"{self.arch} {'+'.join(parts)}" + ("" if self.has_int8_dot else " (no vnni)")
        return text + (" [simulated]" if self.overridden else "")

    def to_dict(self) -> dict:
        return {"arch": self.arch, "flags": list(self.flags), "label": self.label,
                "int8_dot_product": self.has_int8_dot, "bf16": self.has_bf16, "simulated": self.overridden}


def cpuinfo() -> dict[str, str]:
    """The first value of every /proc/cpuinfo key ({} where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


_OVERRIDES = {"avx2": ("avx2", "fma"), "avx512": ("avx2", "fma", "avx512f"),
              "avx512_vnni": ("avx2", "fma", "avx512f", "avx512_vnni"),
              "avx512_bf16": ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")}


@lru_cache(maxsize=4)
def _detect(override: str | None) -> CpuCapabilities:
    if override:
        if override not in _OVERRIDES:
            from .errors import InputError
            raise InputError(f"${ISA_OVERRIDE_ENV}={override!r}; allowed: {', '.join(_OVERRIDES)} (or unset)")
        return CpuCapabilities("x86_64", _OVERRIDES[override], overridden=True)
    info = cpuinfo()
    present = set(info.get("flags", info.get("Features", "")).split())
    arch = platform.machine() or "unknown"
    if arch.lower() in ("arm64", "aarch64") and not info:  # Apple silicon: NEON and dot products always
        present |= {"neon", "asimd", "asimddp"}
    return CpuCapabilities(arch, tuple(f for f in ISA_FLAGS if f in present))


def cpu_capabilities() -> CpuCapabilities:
    return _detect(os.environ.get(ISA_OVERRIDE_ENV) or None)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's CPU set), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

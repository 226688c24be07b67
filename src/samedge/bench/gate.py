"""CI regression gate: compare a bench result with a stored one by same-run ratios, so machine noise cancels.

For every samedge run present in both files and every gated stage, ratio = run p50 / the official fp32 ONNX
baseline's p50 of the same model *in the same file*. slowdown = current ratio / reference ratio; above
max_slowdown is a regression. A run the reference has and the current result lacks is a failure too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

GATED_STAGES = ("predict_1pt", "end_to_end", "encoder")  # what users feel first; graphs alone are breakdown
REFERENCE_KIND = "baseline-official-onnx"


@dataclass(frozen=True)
class StageCheck:
    run: str
    stage: str
    reference_ratio: float
    current_ratio: float

    @property
    def slowdown(self) -> float:
        return self.current_ratio / self.reference_ratio


@dataclass(frozen=True)
class GateResult:
    max_slowdown: float
    checks: tuple[StageCheck, ...]
    missing: tuple[str, ...] = field(default_factory=tuple)

    @property
    def regressions(self) -> tuple[StageCheck, ...]:
        return tuple(c for c in self.checks if c.slowdown > self.max_slowdown)

    @property
    def passed(self) -> bool:
        return not self.regressions and not self.missing

    def report(self) -> str:
        lines = [f"gate: {len(self.checks)} stage checks, max slowdown {self.max_slowdown:.2f}x (ratios to the "
                 f"official fp32 ONNX baseline of the same run)"]
        for c in sorted(self.checks, key=lambda c: -c.slowdown):
            flag = "REGRESSION" if c.slowdown > self.max_slowdown else "ok"
            lines.append(f"  {flag:10s} {c.run} {c.stage}: {c.reference_ratio:.3f} -> {c.current_ratio:.3f} "
                         f"of baseline ({c.slowdown:.2f}x)")
        for m in self.missing:
            lines.append(f"  MISSING    {m}: in the reference, not measured now")
        lines.append("gate: " + ("passed" if self.passed else "FAILED"))
        return "\n".join(lines)


def _ratios(result: dict) -> dict[tuple[str, str], float]:
    if result.get("schema") != "samedge-bench":
        raise InputError("not a samedge bench result (schema must be 'samedge-bench')")
    base = {r["model_type"]: r for r in result["runs"] if r["kind"] == REFERENCE_KIND}
    out = {}
    for r in result["runs"]:
        if r["kind"] != "samedge":
            continue
        b = base.get(r["model_type"])
        if b is None:
            raise InputError(f"{r['id']}: no {REFERENCE_KIND} run of {r['model_type']} in the same result; the "
                             "gate compares ratios to it (run bench with baselines on)")
        for stage in GATED_STAGES:
            if stage in r["stages"] and stage in b["stages"]:
                out[(r["id"], stage)] = r["stages"][stage]["p50"] / b["stages"][stage]["p50"]
    return out


def compare(current: dict, reference: dict, max_slowdown: float = 1.15) -> GateResult:
    if not max_slowdown >= 1.0:
        raise InputError(f"max_slowdown must be >= 1.0, got {max_slowdown}")
    now, ref = _ratios(current), _ratios(reference)
    checks = tuple(StageCheck(run, stage, ref[(run, stage)], now[(run, stage)])
                   for run, stage in ref if (run, stage) in now)
    missing = tuple(sorted({run for run, _ in ref} - {run for run, _ in now}))
    return GateResult(max_slowdown, checks, missing)

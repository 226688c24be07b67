"""Quantized bundle variants with measured fidelity: one config dataclass per method (see methods.py)."""

"""The pre-trade risk gate. Pure: no I/O, no clock, no logging; time comes in with the inputs."""

from risk.gate import RiskContext, RiskGate, RiskLimits

__all__ = ["RiskContext", "RiskGate", "RiskLimits"]

"""Quoting models (pure maths) and their online estimators. No I/O, no clock, no logging."""

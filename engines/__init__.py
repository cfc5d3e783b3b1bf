"""Inference backends behind one small interface. Imports nothing from `agent`."""

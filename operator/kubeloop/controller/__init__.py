"""Thin kopf handlers: read the object, call the pure builders, apply, write status."""

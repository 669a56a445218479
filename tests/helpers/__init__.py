"""Helpers shared by test modules in several folders (test modules never import one another)."""

"""Shipped attnmace models (TorchScript files), installed as package data ``attnmace.models``."""

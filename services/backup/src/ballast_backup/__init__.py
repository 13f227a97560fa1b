"""Ballast backups: snapshots, verification, restore."""

"""Collision scenarios on a booted guest: prove a shared section, switch modes, walk, tear down."""

"""Test helpers: toy encoders, media made on the spot, tiny real models, pool tasks."""

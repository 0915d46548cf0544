"""Pipeline stages: each a function from artifacts on disk to artifacts on disk."""

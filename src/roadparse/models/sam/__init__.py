"""Segment Anything family: the fast image encoder and exact decoder, SAM-HQ / SAM 2 variants, automatic mask generation, official checkpoint conversion."""

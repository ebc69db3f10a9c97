"""Pillar 4: NCPL — configuration-to-performance regression with a pretrained encoder."""
__all__: list[str] = []

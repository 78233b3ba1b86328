__all__ = []  # being written (issue 2): LRS SLITLESSPRISM simulator

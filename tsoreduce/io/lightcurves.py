__all__ = []  # being written (issue 5): light-curve table readers and writers

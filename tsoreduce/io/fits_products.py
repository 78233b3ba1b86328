__all__ = []  # being written (issue 2): uncal/rateints/calints/x1dints readers and writers

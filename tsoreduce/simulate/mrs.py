__all__ = []  # being written (issue 7): MRS cube simulator

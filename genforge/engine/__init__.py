from genforge.engine.fit import fit

__all__ = ["fit"]
